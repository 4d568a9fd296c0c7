//! The dashboard's views, rendered on the server from plain data. Pure
//! functions: no storage, no request; `now_ms` is passed in.

use std::fmt::Write;

use storehook_db::{
    DeliveryRecord, EndpointStats, StoreStats, StoredNotification, Subscription, Verdict,
};

use super::help;
use super::html::{count, esc, time_or_dash, time_tag, url_component};

/// One store as the overview shows it.
pub struct StoreView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub enabled: bool,
    pub supported: bool,
    pub stats: StoreStats,
    /// The URL to paste into the store's console.
    pub url: String,
    /// Whether `url` comes from `[server] public_url` (else from the request's Host).
    pub url_configured: bool,
}

/// What an operator needs to know first about a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    Connected,
    Waiting,
    UntrackedOnly,
    /// Genuine notifications still arrive, but requests that failed
    /// verification came after the last of them (someone probing the URL,
    /// or a secret that changed minutes ago).
    RefusingSome,
    Rejecting,
    Disabled,
    Unsupported,
}

/// How long after its last verified notification a store still counts as
/// delivering: refusals within it only warn (yellow); anonymous traffic
/// cannot turn the card red while genuine notifications keep arriving.
pub const DELIVERING_FOR_MS: i64 = 24 * 3600 * 1000;

impl StoreState {
    pub fn of(store: &StoreView<'_>, now_ms: i64) -> Self {
        let s = &store.stats;
        if !store.supported {
            return StoreState::Unsupported;
        }
        if !store.enabled {
            return StoreState::Disabled;
        }
        let last_ok = s.last_verified_ms.max(s.last_received_ms);
        if let Some(rejected) = s.last_rejected_ms {
            let newer = match last_ok {
                None => true,
                Some(ok) => rejected > ok,
            };
            if newer {
                return match last_ok {
                    Some(ok) if now_ms - ok < DELIVERING_FOR_MS => StoreState::RefusingSome,
                    _ => StoreState::Rejecting,
                };
            }
        }
        if s.last_received_ms.is_some() {
            StoreState::Connected
        } else if s.last_verified_ms.is_some() {
            StoreState::UntrackedOnly
        } else {
            StoreState::Waiting
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StoreState::Connected => "connected",
            StoreState::Waiting => "waiting for the first notification",
            StoreState::UntrackedOnly => "only untracked notifications so far",
            StoreState::RefusingSome => "delivering; some requests refused",
            StoreState::Rejecting => "rejecting deliveries",
            StoreState::Disabled => "not enabled",
            StoreState::Unsupported => "not supported yet",
        }
    }

    /// The CSS class.
    fn class(self) -> &'static str {
        match self {
            StoreState::Connected => "connected",
            StoreState::Waiting => "waiting",
            StoreState::UntrackedOnly => "untracked",
            StoreState::RefusingSome => "refusing-some",
            StoreState::Rejecting => "rejecting",
            StoreState::Disabled => "disabled",
            StoreState::Unsupported => "unsupported",
        }
    }

    /// Overview order: problems first, then the rest, then idle stores.
    fn rank(self) -> u8 {
        match self {
            StoreState::Rejecting => 0,
            StoreState::Waiting => 1,
            StoreState::RefusingSome => 2,
            StoreState::UntrackedOnly => 3,
            StoreState::Connected => 4,
            StoreState::Disabled => 5,
            StoreState::Unsupported => 6,
        }
    }
}

/// The last rejection's reason in plain words, or the adapter's message.
pub fn rejection_text(store: &str, code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(code), message) => help::rejection_reason(store, code)
            .map(str::to_owned)
            .or_else(|| message.map(str::to_owned))
            .unwrap_or_else(|| code.to_owned()),
        (None, Some(message)) => message.to_owned(),
        (None, None) => "no reason recorded".to_owned(),
    }
}

/// The auto-refreshed part of the overview: the store cards and the recent
/// notifications.
pub fn overview_live(
    now_ms: i64,
    stores: &[StoreView<'_>],
    recent: &[StoredNotification],
    endpoints: &[EndpointView],
    storage: &StorageView,
    store_names: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    let mut ordered: Vec<&StoreView<'_>> = stores.iter().collect();
    ordered.sort_by_key(|s| StoreState::of(s, now_ms).rank());
    let enabled = stores.iter().filter(|s| s.enabled && s.supported).count();
    let connected = stores
        .iter()
        .filter(|s| StoreState::of(s, now_ms) == StoreState::Connected)
        .count();
    let rejecting = stores
        .iter()
        .filter(|s| StoreState::of(s, now_ms) == StoreState::Rejecting)
        .count();
    let _ = write!(
        out,
        "<section id=\"stores\" aria-labelledby=\"stores-h\"><h2 id=\"stores-h\">Stores</h2>\
         <p class=\"summary\">{} enabled · {} connected{}</p><div class=\"cards\">",
        count(enabled as i64, "store", "stores"),
        connected,
        if rejecting > 0 {
            format!(" · <strong class=\"bad\">{rejecting} rejecting deliveries</strong>")
        } else {
            String::new()
        }
    );
    for store in ordered {
        out.push_str(&store_card(now_ms, store));
    }
    out.push_str("</div></section>");
    out.push_str(&recent_table(now_ms, recent, store_names));
    out.push_str(&webhooks_section(now_ms, endpoints));
    out.push_str(&storage_section(storage));
    out
}

/// The database's size and what `[retention]` keeps.
pub struct StorageView {
    pub file_bytes: u64,
    pub raw_body_days: u32,
    pub deliveries_days: u32,
}

fn storage_section(s: &StorageView) -> String {
    let kept = |days: u32| {
        if days == 0 {
            "forever".to_owned()
        } else {
            count(i64::from(days), "day", "days")
        }
    };
    format!(
        "<section id=\"storage\" aria-labelledby=\"storage-h\"><h2 id=\"storage-h\">Storage</h2>\
         <p class=\"summary\">Database <strong id=\"database-size\">{}</strong> on disk · raw request bodies kept {} · \
         delivered webhooks kept {} (<code>[retention]</code>)</p></section>",
        esc(&human_bytes(s.file_bytes)),
        kept(s.raw_body_days),
        kept(s.deliveries_days)
    )
}

/// `812 KB`, `12.3 MB`, `4.1 GB` (powers of 1000, as disks are sold).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn store_card(now_ms: i64, store: &StoreView<'_>) -> String {
    let state = StoreState::of(store, now_ms);
    let s = &store.stats;
    let setup = help::setup(store.id);
    let id = esc(store.id);
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"card state-{class}\" id=\"store-{id}\" data-store=\"{id}\" data-state=\"{class}\">\
         <header><h3>{name}</h3><span class=\"badge state\">{label}</span></header>",
        class = state.class(),
        name = esc(store.name),
        label = state.label(),
    );
    let explanation = match state {
        StoreState::Connected => {
            "Verified notifications for tracked subscriptions are arriving.".to_owned()
        }
        StoreState::Waiting => format!(
            "Nothing has arrived yet. Paste the URL below into {}.",
            esc(setup.console)
        ),
        StoreState::UntrackedOnly => "Deliveries verify, but none was for a tracked subscription yet, \
             so <b>Last received</b> is still waiting: track a subscription \
             (<code>POST /v1/subscriptions</code>) or turn on <code>[tracking] auto_track</code>."
            .to_owned(),
        StoreState::RefusingSome => format!(
            "Verified notifications are still arriving (the last {}), but requests that failed \
             verification came after it: <span class=\"reason\">{}</span>. If you did not just \
             change a secret, these are most likely someone else probing this URL and are safe to \
             ignore; nothing was stored for them. The card turns red only if refusals continue \
             for a day without a verified notification.",
            time_or_dash(now_ms, s.last_verified_ms.max(s.last_received_ms)),
            esc(&rejection_text(
                store.id,
                s.last_rejection_reason.as_deref(),
                s.last_rejection_message.as_deref()
            ))
        ),
        StoreState::Rejecting => format!(
            "The latest delivery was refused: <span class=\"reason\">{}</span>.",
            esc(&rejection_text(
                store.id,
                s.last_rejection_reason.as_deref(),
                s.last_rejection_message.as_deref()
            ))
        ),
        StoreState::Disabled => format!(
            "Set <code>[stores.{id}] enabled = true</code> in config.toml and restart storehook."
        ),
        StoreState::Unsupported => {
            "storehook does not support this store yet; its notifications are answered 501 and not stored."
                .to_owned()
        }
    };
    let _ = write!(out, "<p class=\"explain\">{explanation}</p>");
    // A store not in use gets a compact card, unless it has a history.
    let idle = matches!(state, StoreState::Disabled | StoreState::Unsupported);
    let has_history = s.last_verified_ms.is_some() || s.last_rejected_ms.is_some();
    if !idle || has_history {
        let _ = write!(
            out,
            "<dl class=\"facts\">\
             <dt>Last received</dt><dd class=\"last-received\">{}</dd>\
             <dt>Last verified delivery</dt><dd class=\"last-verified\">{}</dd>\
             <dt>Last rejection</dt><dd class=\"last-rejection\">{}</dd></dl>\
             <ul class=\"counts\"><li><b>{}</b> accepted</li><li><b>{}</b> untracked</li>\
             <li><b>{}</b> {}</li><li><b>{}</b> rejected</li></ul>",
            time_or_dash(now_ms, s.last_received_ms),
            time_or_dash(now_ms, s.last_verified_ms),
            match s.last_rejected_ms {
                None => "<span class=\"muted\">—</span>".to_owned(),
                // While rejecting, the reason is already the card's headline.
                Some(at) if state == StoreState::Rejecting => format!(
                    "{}{}",
                    time_tag(now_ms, at),
                    s.last_rejection_reason
                        .as_deref()
                        .map(|c| format!(" <code class=\"code\">{}</code>", esc(c)))
                        .unwrap_or_default()
                ),
                Some(at) => format!(
                    "{} — <span class=\"reason\">{}</span>{}",
                    time_tag(now_ms, at),
                    esc(&rejection_text(
                        store.id,
                        s.last_rejection_reason.as_deref(),
                        s.last_rejection_message.as_deref()
                    )),
                    s.last_rejection_reason
                        .as_deref()
                        .map(|c| format!(" <code class=\"code\">{}</code>", esc(c)))
                        .unwrap_or_default()
                ),
            },
            s.accepted,
            s.untracked,
            s.duplicates,
            if s.duplicates == 1 {
                "duplicate"
            } else {
                "duplicates"
            },
            s.rejected,
        );
    }
    let _ = write!(
        out,
        "<details id=\"setup-{id}\"{open}><summary>Set up in {console}</summary>",
        open = if matches!(state, StoreState::Waiting) {
            " open"
        } else {
            ""
        },
        console = esc(setup.console),
    );
    if store.supported {
        let _ = write!(
            out,
            "<p>Notification URL: <code class=\"url\">{}</code>{}</p>",
            esc(&store.url),
            if store.url_configured {
                ""
            } else {
                " <small class=\"muted\">(from this page's address; set <code>[server] public_url</code> \
                 to the address the store reaches)</small>"
            }
        );
    }
    out.push_str("<ol>");
    let url = esc(&store.url);
    for step in setup.steps {
        let _ = write!(out, "<li>{}</li>", step.replace("{url}", &url));
    }
    out.push_str("</ol>");
    if let Some(test) = setup.test {
        let _ = write!(out, "<p class=\"test\"><b>Test:</b> {test}</p>");
    }
    out.push_str("</details></article>");
    out
}

fn verdict_badge(n: &StoredNotification) -> String {
    // A store's test applies to no subscription, whatever its row says.
    if n.event_type == Some(storehook_core::EventType::Test) {
        return "<span class=\"badge v-tracked\">store test</span>".to_owned();
    }
    match n.verdict {
        Verdict::Tracked => "<span class=\"badge v-tracked\">tracked</span>".to_owned(),
        Verdict::Untracked => "<span class=\"badge v-untracked\">untracked</span>".to_owned(),
        Verdict::Duplicate => "<span class=\"badge\">duplicate</span>".to_owned(),
        Verdict::Rejected => format!(
            "<span class=\"badge v-rejected\">rejected</span>{}",
            n.rejection_code
                .as_deref()
                .map(|c| format!(" <code class=\"code\">{}</code>", esc(c)))
                .unwrap_or_default()
        ),
    }
}

fn event_type_of(n: &StoredNotification) -> String {
    n.event_type
        .map(|t| t.as_str().to_owned())
        .or_else(|| n.raw_type.clone())
        .unwrap_or_else(|| "—".to_owned())
}

/// A long id shortened for a table cell (the full id is in the title).
fn short(id: &str) -> String {
    if id.chars().count() <= 28 {
        esc(id)
    } else {
        let head: String = id.chars().take(24).collect();
        format!("{}…", esc(&head))
    }
}

fn subscription_link(store: &str, id: &str) -> String {
    format!(
        "<a href=\"/dashboard/subscriptions?store={}&amp;q={}\" title=\"{}\">{}</a>",
        url_component(store),
        url_component(id),
        esc(id),
        short(id)
    )
}

fn notification_rows(
    now_ms: i64,
    rows: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
    with_store: bool,
) -> String {
    let mut out = String::new();
    for n in rows {
        let _ = write!(
            out,
            "<tr data-id=\"{}\"><td>{}</td>",
            n.id,
            time_tag(now_ms, n.received_at_ms)
        );
        if with_store {
            let _ = write!(out, "<td>{}</td>", esc(&store_names(&n.store)));
        }
        let raw = n
            .raw_type
            .as_deref()
            .filter(|r| Some(*r) != n.event_type.map(|t| t.as_str()))
            .map(|r| format!("<br><small class=\"muted\">{}</small>", esc(r)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<td><a class=\"detail\" href=\"/dashboard/notifications/{id}\">{ty}</a>{raw}</td><td>{sub}</td>\
             <td>{verdict}</td><td>{env}</td></tr>",
            id = n.id,
            ty = esc(&event_type_of(n)),
            sub = n
                .subscription_id
                .as_deref()
                .map(|s| subscription_link(&n.store, s))
                .unwrap_or_else(|| "<span class=\"muted\">—</span>".to_owned()),
            verdict = verdict_badge(n),
            env = n.environment.map(|e| e.as_str()).unwrap_or("—"),
        );
    }
    out
}

fn recent_table(
    now_ms: i64,
    recent: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::from(
        "<section id=\"recent\" aria-labelledby=\"recent-h\"><h2 id=\"recent-h\">Recent notifications</h2>",
    );
    if recent.is_empty() {
        out.push_str("<p class=\"muted\">No notification stored yet.</p></section>");
        return out;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Received</th><th>Store</th>\
         <th>Type</th><th>Subscription</th><th>Verdict</th><th>Environment</th></tr></thead><tbody>",
    );
    out.push_str(&notification_rows(now_ms, recent, store_names, true));
    out.push_str("</tbody></table></div></section>");
    out
}

/// One outgoing endpoint (webhook or forward) as the overview shows it.
pub struct EndpointView {
    pub name: String,
    /// `webhook` or `forward`.
    pub kind: &'static str,
    /// Without credentials or query string.
    pub url: String,
    pub stats: EndpointStats,
    /// The most recent dead deliveries (each with a retry button).
    pub dead: Vec<DeliveryRecord>,
}

/// The outgoing endpoints with their queues and retry buttons.
pub fn webhooks_section(now_ms: i64, endpoints: &[EndpointView]) -> String {
    let mut out = String::from(
        "<section id=\"webhooks\" aria-labelledby=\"webhooks-h\"><h2 id=\"webhooks-h\">Webhook endpoints</h2>",
    );
    if endpoints.is_empty() {
        out.push_str(
            "<p class=\"muted\">None configured: add <code>[[webhooks]]</code> (normalized events) or \
             <code>[[forward]]</code> (notifications as received) to config.toml.</p></section>",
        );
        return out;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Endpoint</th><th>Pending</th>\
         <th>Dead</th><th>Delivered</th><th>Last success</th><th>Last failure</th><th></th></tr></thead><tbody>",
    );
    for ep in endpoints {
        let s = &ep.stats;
        let name = url_component(&ep.name);
        let failure = match s.last_failure_ms {
            None => "<span class=\"muted\">—</span>".to_owned(),
            Some(at) => format!(
                "{} {}",
                time_tag(now_ms, at),
                esc(
                    &match (s.last_failure_status, s.last_failure_error.as_deref()) {
                        (Some(status), _) => format!("HTTP {status}"),
                        (None, Some(e)) => e.to_owned(),
                        (None, None) => String::new(),
                    }
                )
            ),
        };
        let _ = write!(
            out,
            "<tr data-endpoint=\"{attr}\"><td><b>{label}</b> <small class=\"muted\">{kind}</small><br>\
             <small class=\"mono wrap\">{url}</small></td><td class=\"pending\">{pending}</td>\
             <td class=\"dead\">{dead}</td><td>{delivered}</td><td>{success}</td><td>{failure}</td><td>{test}</td></tr>",
            attr = esc(&ep.name),
            label = esc(&ep.name),
            kind = esc(ep.kind),
            url = esc(&ep.url),
            pending = s.pending,
            dead = if s.dead > 0 {
                format!("<strong class=\"bad\">{}</strong>", s.dead)
            } else {
                "0".to_owned()
            },
            delivered = s.delivered,
            success = time_or_dash(now_ms, s.last_success_ms),
            test = if ep.kind == "webhook" {
                format!(
                    "<form method=\"post\" action=\"/dashboard/webhooks/{name}/test\" class=\"inline\">\
                     <button type=\"submit\" class=\"small\">Send test event</button></form>"
                )
            } else {
                String::new()
            },
        );
        for d in &ep.dead {
            let _ = write!(
                out,
                "<tr class=\"dead-delivery\" data-delivery=\"{id}\"><td colspan=\"6\"><span class=\"badge v-rejected\">dead</span> \
                 {kind} <span class=\"mono\">{event}</span> after {attempts}, last {last}</td>\
                 <td><form method=\"post\" action=\"/dashboard/webhooks/{name}/deliveries/{id}/retry\" class=\"inline\">\
                 <button type=\"submit\" class=\"small\">Retry</button></form></td></tr>",
                id = d.id,
                kind = esc(&d.kind),
                event = esc(&d.event_id),
                attempts = count(d.attempts, "attempt", "attempts"),
                last = esc(&match (d.last_status, d.last_error.as_deref()) {
                    (Some(status), _) => format!("HTTP {status}"),
                    (None, Some(e)) => e.to_owned(),
                    (None, None) => "no answer".to_owned(),
                }),
            );
        }
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// The lookup form; `stores` are (id, name) of the stores one can pick.
pub fn lookup_form(stores: &[(&str, &str)], store: Option<&str>, q: &str) -> String {
    let mut options = String::from("<option value=\"\">any store</option>");
    for (id, name) in stores {
        let selected = if Some(*id) == store { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{}\"{selected}>{}</option>",
            esc(id),
            esc(name)
        );
    }
    format!(
        "<form class=\"lookup\" method=\"get\" action=\"/dashboard/subscriptions\" role=\"search\">\
         <label>Store <select name=\"store\">{options}</select></label>\
         <label class=\"grow\">Subscription id or app user id \
         <input type=\"search\" name=\"q\" value=\"{}\" required maxlength=\"512\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Look up</button></form>",
        esc(q)
    )
}

/// One subscription with its history.
pub fn subscription_block(
    now_ms: i64,
    sub: &Subscription,
    store_name: &str,
    history: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    let status = sub.status.map(|s| s.as_str()).unwrap_or("unknown");
    let _ = write!(
        out,
        "<article class=\"subscription\" data-subscription=\"{id}\"><header><h3>{store} · <span class=\"mono\">{short}</span></h3>\
         <span class=\"badge status-{status}\">{status}</span></header><dl class=\"facts\">",
        id = esc(&sub.subscription_id),
        store = esc(store_name),
        short = short(&sub.subscription_id),
        status = esc(status),
    );
    let mut fact = |name: &str, value: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", esc(name));
    };
    fact("Status", esc(status));
    fact(
        "Expires",
        sub.expires_at_ms
            .map(|t| {
                format!(
                    "{} <small class=\"muted\">({})</small>",
                    esc(&super::html::utc(t)),
                    time_tag(now_ms, t)
                )
            })
            .unwrap_or_else(|| "—".to_owned()),
    );
    fact(
        "Auto-renew",
        match sub.auto_renew {
            Some(true) => "on".to_owned(),
            Some(false) => "off".to_owned(),
            None => "—".to_owned(),
        },
    );
    fact("Product", esc(sub.product_id.as_deref().unwrap_or("—")));
    fact(
        "Environment",
        sub.environment
            .map(|e| e.as_str())
            .unwrap_or("—")
            .to_owned(),
    );
    fact(
        "App user id",
        esc(sub.app_user_id.as_deref().unwrap_or("—")),
    );
    fact(
        "Subscription id",
        format!(
            "<span class=\"mono wrap\">{}</span>",
            esc(&sub.subscription_id)
        ),
    );
    fact(
        "Last event",
        sub.last_event_type
            .map(|t| {
                format!(
                    "{} {}",
                    esc(t.as_str()),
                    sub.last_event_at_ms
                        .map(|at| time_tag(now_ms, at))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "—".to_owned()),
    );
    fact("Tracked since", time_tag(now_ms, sub.created_at_ms));
    if let Some(previous) = &sub.continues_subscription_id {
        fact("Continues", subscription_link(&sub.store, previous));
    }
    if sub.state_pending {
        fact(
            "State",
            "waiting for the store's API (a state fetch is outstanding)".to_owned(),
        );
    }
    if let Some(attention) = &sub.attention {
        fact(
            "Needs attention",
            format!("<strong class=\"bad\">{}</strong>", esc(attention)),
        );
    }
    out.push_str("</dl><h4>History</h4>");
    if history.is_empty() {
        out.push_str("<p class=\"muted\">No notification stored for it.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Received</th><th>Type</th>\
             <th>Subscription</th><th>Verdict</th><th>Environment</th></tr></thead><tbody>",
        );
        out.push_str(&notification_rows(now_ms, history, store_names, false));
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</article>");
    out
}

/// The detail view of one notification.
pub fn notification_detail(
    now_ms: i64,
    n: &StoredNotification,
    store_name: &str,
    decoded_masked: &serde_json::Value,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p><a href=\"/#recent\">← Recent notifications</a></p>\
         <h2>{ty} <small class=\"muted\">from {store}</small></h2><dl class=\"facts\">",
        ty = esc(&event_type_of(n)),
        store = esc(store_name),
    );
    let mut fact = |name: &str, value: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", esc(name));
    };
    fact("Verdict", verdict_badge(n));
    fact(
        "Received",
        format!(
            "{} ({})",
            time_tag(now_ms, n.received_at_ms),
            esc(&super::html::utc(n.received_at_ms))
        ),
    );
    if let Some(at) = n.occurred_at_ms {
        fact(
            "Occurred",
            format!("{} ({})", time_tag(now_ms, at), esc(&super::html::utc(at))),
        );
    }
    fact(
        "Store's notification id",
        format!(
            "<span class=\"mono wrap\">{}</span>",
            esc(&n.notification_id)
        ),
    );
    if let Some(raw) = &n.raw_type {
        fact("Store's type", format!("<code>{}</code>", esc(raw)));
    }
    fact(
        "Environment",
        n.environment.map(|e| e.as_str()).unwrap_or("—").to_owned(),
    );
    fact(
        "Subscription",
        n.subscription_id
            .as_deref()
            .map(|s| subscription_link(&n.store, s))
            .unwrap_or_else(|| "—".to_owned()),
    );
    if let Some(p) = &n.product_id {
        fact("Product", esc(p));
    }
    out.push_str("</dl><h3>What it changed</h3>");
    out.push_str(&what_it_changed(n));
    if let Some(attention) = &n.attention {
        let _ = write!(
            out,
            "<p><strong class=\"bad\">Needs attention:</strong> {}</p>",
            esc(attention)
        );
    }
    let pretty =
        serde_json::to_string_pretty(decoded_masked).unwrap_or_else(|_| decoded_masked.to_string());
    let _ = write!(
        out,
        "<h3>Decoded payload</h3><p class=\"muted\">As the store's adapter decoded it; secrets and tokens are masked.</p>\
         <pre class=\"payload\"><code>{}</code></pre>",
        esc(&pretty)
    );
    out
}

fn what_it_changed(n: &StoredNotification) -> String {
    let is_test = n.event_type == Some(storehook_core::EventType::Test);
    let state_rows = n.state.as_ref().filter(|s| !s.is_empty()).map(|s| {
        let mut rows = String::new();
        if let Some(status) = s.status {
            let _ = write!(
                rows,
                "<tr><th>Status</th><td>{}</td></tr>",
                esc(status.as_str())
            );
        }
        if let Some(at) = s.expires_at_ms {
            let _ = write!(
                rows,
                "<tr><th>Expires</th><td>{}</td></tr>",
                esc(&super::html::utc(at))
            );
        }
        if let Some(on) = s.auto_renew {
            let _ = write!(
                rows,
                "<tr><th>Auto-renew</th><td>{}</td></tr>",
                if on { "on" } else { "off" }
            );
        }
        if let Some(p) = &s.product_id {
            let _ = write!(rows, "<tr><th>Product</th><td>{}</td></tr>", esc(p));
        }
        format!("<table class=\"changes\">{rows}</table>")
    });
    match n.verdict {
        _ if is_test => "<p class=\"changed\">A store test notification: it proves the connection \
                         and changes no subscription.</p>"
            .to_owned(),
        Verdict::Tracked => format!(
            "<p class=\"changed\">Applied to the tracked subscription {}{}</p>{}",
            n.subscription_id
                .as_deref()
                .map(|s| subscription_link(&n.store, s))
                .unwrap_or_default(),
            if state_rows.is_some() {
                ", which it moved to (unless a later notification already had):"
            } else {
                "; it implied no state change."
            },
            state_rows.unwrap_or_default()
        ),
        Verdict::Untracked => format!(
            "<p class=\"changed\">Nothing yet: its subscription is not tracked, so it was only stored. \
             Tracking the subscription (<code>POST /v1/subscriptions</code>) applies it then{}</p>{}",
            if state_rows.is_some() { ":" } else { "." },
            state_rows.unwrap_or_default()
        ),
        Verdict::Rejected => format!(
            "<p class=\"changed\">Nothing: the sender was authenticated but the content was unusable, \
             so it was acknowledged and kept as rejected — <span class=\"reason\">{}</span>.</p>",
            esc(&rejection_text(
                &n.store,
                n.rejection_code.as_deref(),
                n.rejection_message.as_deref()
            ))
        ),
        Verdict::Duplicate => "<p class=\"changed\">Nothing: a redelivery of a notification already stored.</p>".to_owned(),
    }
}

/// The sign-in form.
pub fn login(message: Option<&str>, next: &str, admin_configured: bool) -> String {
    if !admin_configured {
        return "<section class=\"login\"><h2>Sign in</h2><p class=\"bad\">No admin token is configured, \
                so the dashboard is closed. Set <code>[server] admin_token</code> or the environment \
                variable <code>STOREHOOK_ADMIN_TOKEN</code> and restart storehook.</p></section>"
            .to_owned();
    }
    format!(
        "<section class=\"login\"><h2>Sign in</h2>\
         <p>The dashboard needs the admin token: <code>[server] admin_token</code>, \
         <code>STOREHOOK_ADMIN_TOKEN</code>, or the one generated at the first start, \
         which <code>storehook admin-token</code> prints.</p>{}\
         <form method=\"post\" action=\"/dashboard/login\" id=\"login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" required autofocus \
         autocomplete=\"current-password\"></label> <button type=\"submit\">Sign in</button></form></section>",
        message
            .map(|m| format!("<p class=\"bad\" role=\"alert\">{}</p>", esc(m)))
            .unwrap_or_default(),
        esc(next)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(812_000), "812 KB");
        assert_eq!(human_bytes(12_345_678), "12.3 MB");
        assert_eq!(human_bytes(4_100_000_000), "4.1 GB");
    }

    fn view(stats: StoreStats) -> StoreView<'static> {
        StoreView {
            id: "stripe",
            name: "Stripe",
            enabled: true,
            supported: true,
            stats,
            url: "https://hooks.example.com/v1/notifications/stripe".into(),
            url_configured: true,
        }
    }

    #[test]
    fn states_follow_the_latest_event() {
        let now = 20;
        let mut s = StoreStats::default();
        assert_eq!(StoreState::of(&view(s.clone()), now), StoreState::Waiting);
        s.last_rejected_ms = Some(9);
        // Refusals before anything verified: red.
        assert_eq!(StoreState::of(&view(s.clone()), now), StoreState::Rejecting);
        s.last_verified_ms = Some(10);
        assert_eq!(
            StoreState::of(&view(s.clone()), now),
            StoreState::UntrackedOnly
        );
        s.last_received_ms = Some(10);
        assert_eq!(StoreState::of(&view(s.clone()), now), StoreState::Connected);
        // A refusal after a verified notification only warns while the store
        // keeps delivering…
        s.last_rejected_ms = Some(11);
        assert_eq!(
            StoreState::of(&view(s.clone()), now),
            StoreState::RefusingSome
        );
        // …and turns red once nothing verified has come for a day.
        assert_eq!(
            StoreState::of(&view(s.clone()), 10 + DELIVERING_FOR_MS),
            StoreState::Rejecting
        );
        s.last_verified_ms = Some(12);
        assert_eq!(StoreState::of(&view(s.clone()), now), StoreState::Connected);
        let mut v = view(s);
        v.enabled = false;
        assert_eq!(StoreState::of(&v, now), StoreState::Disabled);
        v.supported = false;
        assert_eq!(StoreState::of(&v, now), StoreState::Unsupported);
    }

    #[test]
    fn a_rejecting_card_names_the_reason_in_plain_words() {
        let stats = StoreStats {
            last_rejected_ms: Some(1_000),
            last_rejection_reason: Some("no_matching_signature".into()),
            last_rejection_message: Some("no v1 signature matched".into()),
            rejected: 1,
            ..Default::default()
        };
        let html = store_card(61_000, &view(stats));
        assert!(html.contains("rejecting deliveries"), "{html}");
        assert!(
            html.contains("signature did not match any configured Stripe signing secret"),
            "{html}"
        );
        assert!(html.contains("1 minute ago"), "{html}");
        assert!(html.contains("https://hooks.example.com/v1/notifications/stripe"));
        // Unknown codes fall back to the adapter's message.
        assert_eq!(
            rejection_text(
                "example",
                Some("wrong_key"),
                Some("x-example-key does not match")
            ),
            "x-example-key does not match"
        );
    }

    #[test]
    fn values_are_escaped() {
        let n = StoredNotification {
            id: 7,
            store: "example".into(),
            notification_id: "<img src=x onerror=alert(1)>".into(),
            received_at_ms: 0,
            verdict: Verdict::Untracked,
            subscription_id: Some("\"><script>".into()),
            event_type: None,
            raw_type: Some("<b>odd</b>".into()),
            environment: None,
            occurred_at_ms: None,
            product_id: None,
            state: None,
            attention: None,
            rejection_code: None,
            rejection_message: None,
        };
        let html = notification_detail(
            0,
            &n,
            "Ex<ample>",
            &serde_json::json!({"k": "</code><script>"}),
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>odd"), "{html}");
        assert!(html.contains("&lt;/code&gt;&lt;script&gt;"), "{html}");
        let rows = notification_rows(0, &[n], &|s| s.to_owned(), true);
        assert!(
            !rows.contains("<script>") && !rows.contains("<b>odd"),
            "{rows}"
        );
    }
}
