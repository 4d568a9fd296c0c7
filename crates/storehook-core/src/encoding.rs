//! Named base64 engines, each with the reason it is lenient or strict, so an
//! adapter picks one by what it decodes instead of configuring its own.
//!
//! Strict decoding belongs where the bytes are signed as text (Apple's JWS:
//! a re-encoded segment must not verify), lenient where a relay may have
//! re-encoded what is checked another way (Pub/Sub's `message.data`, whose
//! push is authenticated by its OIDC token; a JWT header read before its
//! signature decides anything).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);

/// Standard base64, padded or not, trailing bits ignored.
pub const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// URL-safe base64, padded or not, trailing bits ignored.
pub const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn lenient_engines_take_padded_and_unpadded() {
        assert_eq!(LENIENT_STANDARD.decode("aGk=").unwrap(), b"hi");
        assert_eq!(LENIENT_STANDARD.decode("aGk").unwrap(), b"hi");
        assert_eq!(LENIENT_URL_SAFE.decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(LENIENT_URL_SAFE.decode("-_8=").unwrap(), [0xfb, 0xff]);
    }
}
