//! The dashboard's views, rendered on the server from plain data with maud
//! templates (every value escaped by construction). Pure functions: no
//! storage, no request; `now_ms` is passed in. What a view says about a
//! store (setup steps, rejection codes in plain words) comes from the
//! store's registration ([`StoreHelp`]); the host adds only its own codes.

use maud::{html, Markup};
use storehook_core::{spans, ApiCapabilities, CheckVerdict, FindingLevel, Span, StoreHelp};
use storehook_db::{
    AckStats, DeliveryRecord, EndpointStats, Job, JobKind, JobStatus, Overdue, Source, StoreStats,
    StoredCheck, StoredNotification, Subscription, Verdict,
};

use super::html::{count, dash, time_or_dash, time_tag, url_component, utc};
use crate::delivery::EndpointKind;
use crate::store_api::RunningCheck;

/// One store as the overview shows it.
pub struct StoreView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// The plugin's help for its card.
    pub help: &'a StoreHelp,
    pub enabled: bool,
    pub supported: bool,
    pub stats: StoreStats,
    /// The URL to paste into the store's console.
    pub url: String,
    /// Whether `url` comes from `[server] public_url` (else from the request's Host).
    pub url_configured: bool,
    /// What the store's API adds: checks, backfills, acknowledgements.
    pub pull: PullView,
    /// Its charts over the last days (an enabled store's).
    pub trends: Option<Trends>,
}

/// A store card's sparklines: active subscriptions and notification lag by
/// day, both with the store filter.
#[derive(Debug, Clone)]
pub struct Trends {
    pub active: storehook_db::Chart,
    pub lag: storehook_db::Chart,
}

impl Trends {
    /// The lag's p50 of the last bucket (today), when a notification came.
    pub fn lag_p50_today(&self) -> Option<f64> {
        let p50 = self.lag.series.iter().find(|s| s.label == "p50")?;
        p50.values.last().copied().flatten()
    }
}

/// "Delivers in 2.1 s, p50 today", the sparklines, a link to the charts.
fn trends_section(store: &StoreView<'_>, trends: &Trends) -> Markup {
    html! {
        div.trends {
            p.lag-today {
                @match trends.lag_p50_today() {
                    Some(ms) => { (store.name) " delivers in " b { (super::chart_svg::duration_text(ms)) } ", p50 today" }
                    None => { span.muted { "No notification today yet." } }
                }
            }
            div.sparklines {
                a href={ "/dashboard/charts?metric=active_subscriptions&store=" (url_component(store.id)) } {
                    (super::chart_svg::sparkline(&trends.active, "Active subscriptions"))
                    " " small { "active subscriptions" }
                }
                a href={ "/dashboard/charts?metric=lag&store=" (url_component(store.id)) } {
                    (super::chart_svg::sparkline(&trends.lag, "Lag p50"))
                    " " small { "lag" }
                }
            }
        }
    }
}

/// The pull side of one store, as its card shows it.
#[derive(Debug, Clone, Default)]
pub struct PullView {
    pub capabilities: ApiCapabilities,
    pub last_check: Option<StoredCheck>,
    pub running_check: Option<RunningCheck>,
    pub overdue: Option<Overdue>,
    pub stale: bool,
    pub acknowledgements: Option<AckStats>,
    pub latest_job: Option<Job>,
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

/// The host's own rejection codes (refused before any adapter saw the body).
fn host_reason(code: &str) -> Option<&'static str> {
    match code {
        "payload_too_large" => Some("the body was larger than [server] max_body_bytes"),
        "body_timeout" => Some("the body did not arrive within [server] body_timeout_seconds"),
        "bad_body" => Some("the connection failed while the body was being read"),
        "invalid_json" => Some("the body is not JSON"),
        _ => None,
    }
}

/// The last rejection's reason in plain words (the store's, then the
/// host's), or the adapter's message.
pub fn rejection_text(help: &StoreHelp, code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(code), message) => help
            .explain(code)
            .or_else(|| host_reason(code))
            .or(message)
            .unwrap_or(code)
            .to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => "no reason recorded".to_owned(),
    }
}

/// A plugin's help text: its marked spans become `<code>` and `<b>`, and
/// `{url}` the store's URL. All of it is text to maud, so escaped.
fn help_text(text: &str, url: &str) -> Markup {
    let fill = |t: &str| t.replace("{url}", url);
    html! {
        @for span in spans(text) {
            @match span {
                Span::Text(t) => { (fill(t)) }
                Span::Code(t) => { code { (fill(t)) } }
                Span::Strong(t) => { b { (fill(t)) } }
            }
        }
    }
}

/// The auto-refreshed part of the overview: the store cards, the recent
/// notifications, the endpoints and the storage line.
pub fn overview_live(
    now_ms: i64,
    stores: &[StoreView<'_>],
    recent: &[StoredNotification],
    endpoints: &[EndpointView],
    storage: &StorageView,
    store_names: &dyn Fn(&str) -> String,
) -> Markup {
    let mut ordered: Vec<&StoreView<'_>> = stores.iter().collect();
    ordered.sort_by_key(|s| StoreState::of(s, now_ms).rank());
    let enabled = stores.iter().filter(|s| s.enabled && s.supported).count();
    let in_state = |state| {
        stores
            .iter()
            .filter(|s| StoreState::of(s, now_ms) == state)
            .count()
    };
    let connected = in_state(StoreState::Connected);
    let rejecting = in_state(StoreState::Rejecting);
    html! {
        section #stores aria-labelledby="stores-h" {
            h2 #stores-h { "Stores" }
            p.summary {
                (count(enabled as i64, "store", "stores")) " enabled · " (connected) " connected"
                @if rejecting > 0 {
                    " · " strong.bad { (rejecting) " rejecting deliveries" }
                }
            }
            div.cards {
                @for store in ordered { (store_card(now_ms, store)) }
            }
        }
        (recent_table(now_ms, recent, store_names))
        (webhooks_section(now_ms, endpoints))
        (storage_section(now_ms, storage))
    }
}

/// The database's size, what `[retention]` keeps, and the storehook
/// processes sharing the database.
pub struct StorageView {
    pub file_bytes: u64,
    pub raw_body_days: u32,
    pub deliveries_days: u32,
    pub instances: Vec<storehook_db::Instance>,
}

fn storage_section(now_ms: i64, s: &StorageView) -> Markup {
    let kept = |days: u32| {
        if days == 0 {
            "forever".to_owned()
        } else {
            count(i64::from(days), "day", "days")
        }
    };
    html! {
        section #storage aria-labelledby="storage-h" {
            h2 #storage-h { "Storage" }
            p.summary {
                "Database " strong #database-size { (human_bytes(s.file_bytes)) } " on disk · "
                "raw request bodies kept " (kept(s.raw_body_days)) " · "
                "delivered webhooks kept " (kept(s.deliveries_days)) " (" code { "[retention]" } ")"
            }
            @if s.instances.len() > 1 {
                h3 { (s.instances.len()) " instances on this database" }
                table #instances {
                    thead { tr { th { "Instance" } th { "Version" } th { "Started" } th { "Last seen" } } }
                    tbody {
                        @for i in &s.instances {
                            tr {
                                td { (i.host) " · pid " (i.pid) @if i.this { " " strong { "(this one)" } } }
                                td { (i.version) }
                                td { (super::html::relative(now_ms, i.started_at_ms)) }
                                td { (super::html::relative(now_ms, i.last_seen_ms)) }
                            }
                        }
                    }
                }
            }
        }
    }
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

/// A rejection code as the store sent it.
fn code_tag(code: Option<&str>) -> Markup {
    html! {
        @if let Some(code) = code { " " code.code { (code) } }
    }
}

fn store_card(now_ms: i64, store: &StoreView<'_>) -> Markup {
    let state = StoreState::of(store, now_ms);
    let s = &store.stats;
    let help = store.help;
    let reason = || {
        rejection_text(
            help,
            s.last_rejection_reason.as_deref(),
            s.last_rejection_message.as_deref(),
        )
    };
    let explanation = match state {
        StoreState::Connected => {
            html! { "Verified notifications for tracked subscriptions are arriving." }
        }
        StoreState::Waiting => {
            html! { "Nothing has arrived yet. Paste the URL below into " (help.console) "." }
        }
        StoreState::UntrackedOnly => html! {
            "Deliveries verify, but none was for a tracked subscription yet, so "
            b { "Last received" } " is still waiting: track a subscription ("
            code { "POST /v1/subscriptions" } ") or turn on " code { "[tracking] auto_track" } "."
        },
        StoreState::RefusingSome => html! {
            "Verified notifications are still arriving (the last "
            (time_or_dash(now_ms, s.last_verified_ms.max(s.last_received_ms)))
            "), but requests that failed verification came after it: "
            span.reason { (reason()) }
            ". If you did not just change a secret, these are most likely someone else probing \
             this URL and are safe to ignore; nothing was stored for them. The card turns red \
             only if refusals continue for a day without a verified notification."
        },
        StoreState::Rejecting => html! {
            "The latest delivery was refused: " span.reason { (reason()) } "."
        },
        StoreState::Disabled => html! {
            "Set " code { "[stores." (store.id) "] enabled = true" }
            " in config.toml and restart storehook."
        },
        StoreState::Unsupported => html! {
            "storehook does not support this store yet; its notifications are answered 501 \
             and not stored."
        },
    };
    // A store not in use gets a compact card, unless it has a history.
    let idle = matches!(state, StoreState::Disabled | StoreState::Unsupported);
    let has_history = s.last_verified_ms.is_some() || s.last_rejected_ms.is_some();
    let code = s.last_rejection_reason.as_deref();
    html! {
        article class={ "card state-" (state.class()) } id={ "store-" (store.id) }
            data-store=(store.id) data-state=(state.class()) {
            header {
                h3 { (store.name) }
                span.badge.state { (state.label()) }
            }
            p.explain { (explanation) }
            @if !idle || has_history {
                dl.facts {
                    dt { "Last received" }
                    dd.last-received { (time_or_dash(now_ms, s.last_received_ms)) }
                    dt { "Last verified delivery" }
                    dd.last-verified { (time_or_dash(now_ms, s.last_verified_ms)) }
                    dt { "Last rejection" }
                    dd.last-rejection {
                        @match s.last_rejected_ms {
                            None => { (dash()) }
                            // While rejecting, the reason is already the card's headline.
                            Some(at) if state == StoreState::Rejecting => {
                                (time_tag(now_ms, at)) (code_tag(code))
                            }
                            Some(at) => {
                                (time_tag(now_ms, at)) " — " span.reason { (reason()) }
                                (code_tag(code))
                            }
                        }
                    }
                }
                ul.counts {
                    li { b { (s.accepted) } " accepted" }
                    li { b { (s.untracked) } " untracked" }
                    li {
                        b { (s.duplicates) } " "
                        (if s.duplicates == 1 { "duplicate" } else { "duplicates" })
                    }
                    li { b { (s.rejected) } " rejected" }
                    @if s.recovered > 0 || store.pull.capabilities.backfill {
                        li.recovered { b { (s.recovered) } " recovered" }
                    }
                }
            }
            @if let Some(trends) = &store.trends {
                (trends_section(store, trends))
            }
            @if store.enabled && store.supported {
                (api_section(now_ms, store))
            }
            details id={ "setup-" (store.id) } open[state == StoreState::Waiting] {
                summary { "Set up in " (help.console) }
                @if store.supported {
                    p {
                        "Notification URL: " code.url { (store.url) }
                        @if !store.url_configured {
                            " " small.muted {
                                "(from this page's address; set " code { "[server] public_url" }
                                " to the address the store reaches)"
                            }
                        }
                    }
                }
                ol {
                    @for step in help.setup { li { (help_text(step, &store.url)) } }
                }
                @if let Some(test) = help.test {
                    p.test { b { "Test:" } " " (help_text(test, &store.url)) }
                }
            }
        }
    }
}

/// The card's "Store API" part: the stale and acknowledgement warnings,
/// the last connection check (or the running one, with its progress), and
/// the backfill with its latest job. Forms post to the dashboard; the
/// script submits them in place and refreshes faster while work runs.
fn api_section(now_ms: i64, store: &StoreView<'_>) -> Markup {
    let pull = &store.pull;
    let id = store.id;
    let running_job = pull
        .latest_job
        .as_ref()
        .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running));
    let busy = pull.running_check.is_some() || running_job.is_some();
    html! {
        section.api id={ "api-" (id) } data-running[busy] {
            @if pull.stale {
                @if let Some(o) = &pull.overdue {
                    p.warning.stale {
                        b { "The store may have stopped delivering: " }
                        (count(o.count, "tracked subscription was", "tracked subscriptions were"))
                        " due to renew or expire with no notification since (the oldest, "
                        code { (o.oldest_subscription_id) } ", " (time_tag(now_ms, o.oldest_due_ms)) "). "
                        @if pull.capabilities.backfill {
                            "Check the connection, then recover what was missed below."
                        } @else {
                            "Check the store's notification settings."
                        }
                    }
                }
            }
            @if let Some(a) = &pull.acknowledgements {
                @if a.overdue > 0 {
                    p.warning.unacknowledged {
                        b { (count(a.overdue, "purchase is", "purchases are")) " still not acknowledged" }
                        " long after it was made; the store refunds purchases left unacknowledged. "
                        "The subscriptions are marked for attention."
                    }
                } @else if a.pending > 0 || a.acknowledged > 0 {
                    p.muted.acknowledgements {
                        (count(a.acknowledged, "purchase acknowledged", "purchases acknowledged"))
                        ", " (a.pending) " waiting."
                    }
                }
            }
            div.check {
                @if let Some(run) = &pull.running_check {
                    p.check-running {
                        b { "Checking the connection…" } " started " (time_tag(now_ms, run.started_at_ms))
                    }
                    @if !run.progress.is_empty() {
                        ol.progress { @for line in &run.progress { li { (line) } } }
                    }
                } @else if let Some(check) = &pull.last_check {
                    p.check-result data-verdict=(check.report.verdict.as_str()) {
                        span class={ "badge verdict-" (check.report.verdict.as_str()) } {
                            (verdict_label(check.report.verdict))
                        }
                        // "Connected." would only repeat the badge.
                        @if check.report.summary != format!("{}.", verdict_label(check.report.verdict)) {
                            " " span.check-summary { (check.report.summary) }
                        }
                        " " small.muted { "checked " (time_tag(now_ms, check.checked_at_ms)) }
                    }
                    details.findings open[!check.report.connected()] {
                        summary { "What the check found" }
                        ul {
                            @for f in &check.report.findings {
                                li class={ "finding level-" (level_class(f.level)) } {
                                    b.title { (f.title) } " " span.detail { (f.detail) }
                                    (code_tag(f.code.as_deref()))
                                }
                            }
                        }
                    }
                } @else {
                    p.muted.check-never {
                        @if pull.capabilities.check {
                            "The connection has not been checked yet."
                        } @else {
                            "No API credentials are configured for this store: storehook only listens. \
                             Check connection says what to set."
                        }
                    }
                }
                form.api-action method="post" action={ "/dashboard/stores/" (id) "/check" } {
                    button.check-connection type="submit" disabled[pull.running_check.is_some()] {
                        "Check connection"
                    }
                }
            }
            @if pull.capabilities.backfill || pull.latest_job.is_some() {
                div.backfill {
                    @if let Some(job) = &pull.latest_job {
                        (job_line(now_ms, job))
                    }
                    @if pull.capabilities.backfill {
                        form.api-action.recover method="post" action={ "/dashboard/stores/" (id) "/backfill" } {
                            label {
                                "Recover missed notifications from the last "
                                select name="since" {
                                    option value="1d" { "day" }
                                    option value="3d" selected { "3 days" }
                                    option value="10d" { "10 days" }
                                    option value="30d" { "30 days" }
                                }
                            }
                            " " label { input type="checkbox" name="only_failures" value="true"; " only what the store failed to deliver" }
                            " " button.backfill type="submit" disabled[running_job.is_some()] { "Recover" }
                        }
                    }
                }
            }
        }
    }
}

fn verdict_label(v: CheckVerdict) -> &'static str {
    match v {
        CheckVerdict::Connected => "Connected",
        CheckVerdict::Problem => "Problem",
        CheckVerdict::Unavailable => "API unavailable",
        CheckVerdict::NotConfigured => "Not configured",
    }
}

fn level_class(level: FindingLevel) -> &'static str {
    match level {
        FindingLevel::Ok => "ok",
        FindingLevel::Info => "info",
        FindingLevel::Warning => "warning",
        FindingLevel::Error => "error",
    }
}

/// "Backfill of the last 3 days: running — 120 scanned, 5 recovered".
fn job_line(now_ms: i64, job: &Job) -> Markup {
    let kind = match job.kind {
        JobKind::Backfill => "Backfill",
        JobKind::CatchUp => "Automatic catch-up",
    };
    let days = ((job.until_ms - job.since_ms) as f64 / 86_400_000.0 * 10.0).round() / 10.0;
    let active = matches!(job.status, JobStatus::Queued | JobStatus::Running);
    html! {
        div.job data-job=(job.id) data-status=(job.status.as_str()) {
            p {
                b { (kind) } " of " (days) " d: "
                span.status { (job.status.as_str()) } " — "
                (count(job.scanned, "record read", "records read")) ", "
                span.job-recovered { (job.recovered) " recovered" } ", "
                (job.duplicates) " already here"
                @if job.skipped > 0 {
                    ", " span.bad.job-skipped title="Records the store's API returned that could not be used (see the progress line and the log)" {
                        (job.skipped) " unusable"
                    }
                }
                " " small.muted { "updated " (time_tag(now_ms, job.updated_at_ms)) }
            }
            @if let Some(line) = &job.progress {
                @if active { p.muted.progress-line { (line) } }
            }
            @if let Some(error) = &job.error { p.error { (error) } }
            @if active {
                form.api-action method="post" action={ "/dashboard/jobs/" (job.id) "/cancel" } {
                    button.cancel type="submit" { "Cancel" }
                }
            }
        }
    }
}

fn verdict_badge(n: &StoredNotification) -> Markup {
    // A store's test applies to no subscription, whatever its row says.
    if n.event_type == Some(storehook_core::EventType::Test) {
        return html! { span.badge.v-tracked { "store test" } };
    }
    match n.verdict {
        Verdict::Tracked => html! { span.badge.v-tracked { "tracked" } },
        Verdict::Untracked => html! { span.badge.v-untracked { "untracked" } },
        Verdict::Duplicate => html! { span.badge { "duplicate" } },
        Verdict::Rejected => html! {
            span.badge.v-rejected { "rejected" } (code_tag(n.rejection_code.as_deref()))
        },
    }
}

fn event_type_of(n: &StoredNotification) -> &str {
    n.event_type
        .map(|t| t.as_str())
        .or(n.raw_type.as_deref())
        .unwrap_or("—")
}

fn environment_of(e: Option<storehook_core::Environment>) -> &'static str {
    e.map(|e| e.as_str()).unwrap_or("—")
}

/// A long id shortened for a table cell (the full id is in the title).
fn short(id: &str) -> String {
    if id.chars().count() <= 28 {
        id.to_owned()
    } else {
        let head: String = id.chars().take(24).collect();
        format!("{head}…")
    }
}

fn subscription_link(store: &str, id: &str) -> Markup {
    html! {
        a href={ "/dashboard/subscriptions?store=" (url_component(store)) "&q=" (url_component(id)) }
            title=(id) { (short(id)) }
    }
}

fn subscription_or_dash(n: &StoredNotification) -> Markup {
    n.subscription_id
        .as_deref()
        .map_or_else(dash, |s| subscription_link(&n.store, s))
}

fn notification_rows(
    now_ms: i64,
    rows: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
    with_store: bool,
) -> Markup {
    html! {
        @for n in rows {
            tr data-id=(n.id) {
                td { (time_tag(now_ms, n.received_at_ms)) }
                @if with_store { td { (store_names(&n.store)) } }
                td {
                    a.detail href={ "/dashboard/notifications/" (n.id) } { (event_type_of(n)) }
                    @if let Some(raw) = n.raw_type.as_deref()
                        .filter(|r| Some(*r) != n.event_type.map(|t| t.as_str())) {
                        br; small.muted { (raw) }
                    }
                }
                td { (subscription_or_dash(n)) }
                td {
                    (verdict_badge(n))
                    @if n.source == Source::Backfill {
                        " " span.badge.recovered title="Recovered from the store's API: the store did not deliver it" { "recovered" }
                    }
                }
                td { (environment_of(n.environment)) }
            }
        }
    }
}

/// `rows` as a table (with a Store column when `with_store`), or `empty`
/// when there are none.
fn notification_table(
    now_ms: i64,
    rows: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
    with_store: bool,
    empty: &str,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { (empty) }
        } @else {
            div.scroll { table.list {
                thead { tr {
                    th { "Received" } @if with_store { th { "Store" } } th { "Type" }
                    th { "Subscription" } th { "Verdict" } th { "Environment" }
                } }
                tbody { (notification_rows(now_ms, rows, store_names, with_store)) }
            } }
        }
    }
}

fn recent_table(
    now_ms: i64,
    recent: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
) -> Markup {
    html! {
        section #recent aria-labelledby="recent-h" {
            h2 #recent-h { "Recent notifications" }
            (notification_table(now_ms, recent, store_names, true, "No notification stored yet."))
        }
    }
}

/// One outgoing endpoint (webhook or forward) as the overview shows it.
pub struct EndpointView {
    pub name: String,
    pub kind: EndpointKind,
    /// Without credentials or query string.
    pub url: String,
    pub stats: EndpointStats,
    /// The most recent dead deliveries (each with a retry button).
    pub dead: Vec<DeliveryRecord>,
}

/// The last answer of an endpoint: `HTTP 500`, or the error.
fn answer(status: Option<u16>, error: Option<&str>, none: &str) -> String {
    match (status, error) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(e)) => e.to_owned(),
        (None, None) => none.to_owned(),
    }
}

/// The outgoing endpoints with their queues and retry buttons.
pub fn webhooks_section(now_ms: i64, endpoints: &[EndpointView]) -> Markup {
    html! {
        section #webhooks aria-labelledby="webhooks-h" {
            h2 #webhooks-h { "Webhook endpoints" }
            @if endpoints.is_empty() {
                p.muted {
                    "None configured: add " code { "[[webhooks]]" } " (normalized events) or "
                    code { "[[forward]]" } " (notifications as received) to config.toml."
                }
            } @else {
                div.scroll { table.list {
                    thead { tr {
                        th { "Endpoint" } th { "Pending" } th { "Dead" } th { "Delivered" }
                        th { "Last success" } th { "Last failure" } th {}
                    } }
                    tbody {
                        @for ep in endpoints { (endpoint_rows(now_ms, ep)) }
                    }
                } }
            }
        }
    }
}

fn endpoint_rows(now_ms: i64, ep: &EndpointView) -> Markup {
    let s = &ep.stats;
    let path = url_component(&ep.name);
    html! {
        tr data-endpoint=(ep.name) {
            td {
                b { (ep.name) } " " small.muted { (ep.kind.as_str()) } br;
                small.mono.wrap { (ep.url) }
            }
            td.pending { (s.pending) }
            td.dead {
                @if s.dead > 0 { strong.bad { (s.dead) } } @else { "0" }
            }
            td { (s.delivered) }
            td { (time_or_dash(now_ms, s.last_success_ms)) }
            td {
                @match s.last_failure_ms {
                    None => { (dash()) }
                    Some(at) => {
                        (time_tag(now_ms, at)) " "
                        (answer(s.last_failure_status, s.last_failure_error.as_deref(), ""))
                    }
                }
            }
            td {
                @if ep.kind == EndpointKind::Webhook {
                    form.inline method="post" action={ "/dashboard/webhooks/" (path) "/test" } {
                        button.small type="submit" { "Send test event" }
                    }
                }
            }
        }
        @for d in &ep.dead {
            tr.dead-delivery data-delivery=(d.id) {
                td colspan="6" {
                    span.badge.v-rejected { "dead" } " " (d.kind) " " span.mono { (d.event_id) }
                    " after " (count(d.attempts, "attempt", "attempts")) ", last "
                    (answer(d.last_status, d.last_error.as_deref(), "no answer"))
                }
                td {
                    form.inline method="post"
                        action={ "/dashboard/webhooks/" (path) "/deliveries/" (d.id) "/retry" } {
                        button.small type="submit" { "Retry" }
                    }
                }
            }
        }
    }
}

/// The lookup form; `stores` are (id, name) of the stores one can pick.
pub fn lookup_form(stores: &[(&str, &str)], store: Option<&str>, q: &str) -> Markup {
    html! {
        form.lookup method="get" action="/dashboard/subscriptions" role="search" {
            label {
                "Store "
                select name="store" {
                    option value="" { "any store" }
                    @for (id, name) in stores {
                        option value=(id) selected[Some(*id) == store] { (name) }
                    }
                }
            }
            label.grow {
                "Subscription id or app user id "
                input type="search" name="q" value=(q) required maxlength="512" autocomplete="off";
            }
            button type="submit" { "Look up" }
        }
    }
}

/// The lookup's results: each subscription found, with its history.
pub fn lookup_results(
    now_ms: i64,
    q: &str,
    found: &[(Subscription, Vec<StoredNotification>)],
    store_names: &dyn Fn(&str) -> String,
) -> Markup {
    html! {
        section #results {
            h2 { (count(found.len() as i64, "subscription", "subscriptions")) " for “" (q) "”" }
            @if found.is_empty() {
                p.muted {
                    "No tracked subscription has this subscription id or app user id. \
                     Notifications of untracked subscriptions are listed under Recent notifications."
                }
            }
            @for (sub, history) in found {
                (subscription_block(now_ms, sub, &store_names(&sub.store), history, store_names))
            }
        }
    }
}

/// One subscription with its history.
pub fn subscription_block(
    now_ms: i64,
    sub: &Subscription,
    store_name: &str,
    history: &[StoredNotification],
    store_names: &dyn Fn(&str) -> String,
) -> Markup {
    let status = sub.status.map(|s| s.as_str()).unwrap_or("unknown");
    html! {
        article.subscription data-subscription=(sub.subscription_id) {
            header {
                h3 { (store_name) " · " span.mono { (short(&sub.subscription_id)) } }
                span class={ "badge status-" (status) } { (status) }
            }
            dl.facts {
                dt { "Status" } dd { (status) }
                dt { "Expires" }
                dd {
                    @if let Some(t) = sub.expires_at_ms {
                        (utc(t)) " " small.muted { "(" (time_tag(now_ms, t)) ")" }
                    } @else { "—" }
                }
                dt { "Auto-renew" }
                dd {
                    (match sub.auto_renew { Some(true) => "on", Some(false) => "off", None => "—" })
                }
                dt { "Product" } dd { (sub.product_id.as_deref().unwrap_or("—")) }
                dt { "Environment" } dd { (environment_of(sub.environment)) }
                dt { "App user id" } dd { (sub.app_user_id.as_deref().unwrap_or("—")) }
                dt { "Subscription id" } dd { span.mono.wrap { (sub.subscription_id) } }
                dt { "Last event" }
                dd {
                    @if let Some(t) = sub.last_event_type {
                        (t.as_str()) " "
                        @if let Some(at) = sub.last_event_at_ms { (time_tag(now_ms, at)) }
                    } @else { "—" }
                }
                dt { "Tracked since" } dd { (time_tag(now_ms, sub.created_at_ms)) }
                @if let Some(previous) = &sub.continues_subscription_id {
                    dt { "Continues" } dd { (subscription_link(&sub.store, previous)) }
                }
                @if sub.state_pending {
                    dt { "State" } dd { "waiting for the store's API (a state fetch is outstanding)" }
                }
                @if let Some(attention) = &sub.attention {
                    dt { "Needs attention" } dd { strong.bad { (attention) } }
                }
            }
            h4 { "History" }
            (notification_table(now_ms, history, store_names, false, "No notification stored for it."))
        }
    }
}

/// The detail view of one notification; `help` is its store's.
pub fn notification_detail(
    now_ms: i64,
    n: &StoredNotification,
    store_name: &str,
    help: &StoreHelp,
    decoded_masked: &serde_json::Value,
) -> Markup {
    let pretty =
        serde_json::to_string_pretty(decoded_masked).unwrap_or_else(|_| decoded_masked.to_string());
    let at = |ms: i64| html! { (time_tag(now_ms, ms)) " (" (utc(ms)) ")" };
    html! {
        p { a href="/#recent" { "← Recent notifications" } }
        h2 { (event_type_of(n)) " " small.muted { "from " (store_name) } }
        dl.facts {
            dt { "Verdict" } dd { (verdict_badge(n)) }
            dt { "Received" } dd { (at(n.received_at_ms)) }
            dt { "Source" }
            dd.source {
                @match n.source {
                    Source::Push => "Pushed by the store",
                    Source::Backfill => "Recovered from the store's API (the store did not deliver it)",
                }
            }
            @if let Some(occurred) = n.occurred_at_ms {
                dt { "Occurred" } dd { (at(occurred)) }
            }
            dt { "Store's notification id" } dd { span.mono.wrap { (n.notification_id) } }
            @if let Some(raw) = &n.raw_type {
                dt { "Store's type" } dd { code { (raw) } }
            }
            dt { "Environment" } dd { (environment_of(n.environment)) }
            dt { "Subscription" }
            dd {
                @match n.subscription_id.as_deref() {
                    Some(s) => { (subscription_link(&n.store, s)) }
                    None => { "—" }
                }
            }
            @if let Some(p) = &n.product_id {
                dt { "Product" } dd { (p) }
            }
        }
        h3 { "What it changed" }
        (what_it_changed(n, help))
        @if let Some(attention) = &n.attention {
            p { strong.bad { "Needs attention:" } " " (attention) }
        }
        h3 { "Decoded payload" }
        p.muted { "As the store's adapter decoded it; secrets and tokens are masked." }
        pre.payload { code { (pretty) } }
    }
}

fn what_it_changed(n: &StoredNotification, help: &StoreHelp) -> Markup {
    let is_test = n.event_type == Some(storehook_core::EventType::Test);
    let state = n.state.as_ref().filter(|s| !s.is_empty());
    let state_rows = state.map(|s| {
        html! {
            table.changes {
                @if let Some(status) = s.status {
                    tr { th { "Status" } td { (status.as_str()) } }
                }
                @if let Some(at) = s.expires_at_ms {
                    tr { th { "Expires" } td { (utc(at)) } }
                }
                @if let Some(on) = s.auto_renew {
                    tr { th { "Auto-renew" } td { (if on { "on" } else { "off" }) } }
                }
                @if let Some(p) = &s.product_id {
                    tr { th { "Product" } td { (p) } }
                }
            }
        }
    });
    match n.verdict {
        _ if is_test => html! {
            p.changed {
                "A store test notification: it proves the connection and changes no subscription."
            }
        },
        Verdict::Tracked => html! {
            p.changed {
                "Applied to the tracked subscription "
                @if let Some(s) = n.subscription_id.as_deref() { (subscription_link(&n.store, s)) }
                @if state_rows.is_some() {
                    ", which it moved to (unless a later notification already had):"
                } @else {
                    "; it implied no state change."
                }
            }
            (state_rows.unwrap_or_default())
        },
        Verdict::Untracked => html! {
            p.changed {
                "Nothing yet: its subscription is not tracked, so it was only stored. Tracking \
                 the subscription (" code { "POST /v1/subscriptions" } ") applies it then"
                (if state_rows.is_some() { ":" } else { "." })
            }
            (state_rows.unwrap_or_default())
        },
        Verdict::Rejected => html! {
            p.changed {
                "Nothing: the sender was authenticated but the content was unusable, so it was \
                 acknowledged and kept as rejected — "
                span.reason {
                    (rejection_text(help, n.rejection_code.as_deref(), n.rejection_message.as_deref()))
                }
                "."
            }
        },
        Verdict::Duplicate => html! {
            p.changed { "Nothing: a redelivery of a notification already stored." }
        },
    }
}

/// The sign-in form.
pub fn login(message: Option<&str>, next: &str, admin_configured: bool) -> Markup {
    if !admin_configured {
        return html! {
            section.login {
                h2 { "Sign in" }
                p.bad {
                    "No admin token is configured, so the dashboard is closed. Set "
                    code { "[server] admin_token" } " or the environment variable "
                    code { "STOREHOOK_ADMIN_TOKEN" } " and restart storehook."
                }
            }
        };
    }
    html! {
        section.login {
            h2 { "Sign in" }
            p {
                "The dashboard needs the admin token: " code { "[server] admin_token" } ", "
                code { "STOREHOOK_ADMIN_TOKEN" } ", or the one generated at the first start, which "
                code { "storehook admin-token" } " prints."
            }
            @if let Some(m) = message { p.bad role="alert" { (m) } }
            form method="post" action="/dashboard/login" id="login" {
                input type="hidden" name="next" value=(next);
                label {
                    "Admin token "
                    input type="password" name="token" id="token" required autofocus
                        autocomplete="current-password";
                }
                " "
                button type="submit" { "Sign in" }
            }
        }
    }
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

    /// A plugin's help, as a registration carries it.
    const ACME: StoreHelp = StoreHelp {
        console: "the Acme <console>",
        setup: &[
            "In **Hooks**, paste `{url}`.",
            "Then <b>restart</b> & wait.",
        ],
        test: Some("Press **Ping**: the card shows **connected**."),
        codes: &[(
            &["no_matching_signature", "bad_signature"],
            "signature did not match any configured Acme signing secret",
        )],
    };

    fn view(stats: StoreStats) -> StoreView<'static> {
        StoreView {
            id: "acme",
            name: "Acme",
            help: &ACME,
            enabled: true,
            supported: true,
            stats,
            url: "https://hooks.example.com/v1/notifications/acme".into(),
            url_configured: true,
            pull: PullView::default(),
            trends: None,
        }
    }

    fn daily(
        metric: storehook_db::ChartMetric,
        label: &str,
        values: Vec<Option<f64>>,
    ) -> storehook_db::Chart {
        let n = values.len();
        storehook_db::Chart {
            metric,
            unit: metric.unit(),
            bucket: storehook_db::ChartBucket::Day,
            buckets: (0..n as i64).map(|i| i * 86_400_000).collect(),
            incomplete: (0..n).map(|i| i + 1 == n).collect(),
            series: vec![storehook_db::ChartSeries {
                label: label.into(),
                currency: None,
                converted: false,
                values,
            }],
        }
    }

    #[test]
    fn a_card_says_how_fast_its_store_delivers_today() {
        use storehook_db::ChartMetric;
        let mut store = view(StoreStats::default());
        store.trends = Some(Trends {
            active: daily(
                ChartMetric::ActiveSubscriptions,
                "all",
                vec![Some(3.0), Some(4.0)],
            ),
            lag: daily(ChartMetric::Lag, "p50", vec![Some(900.0), Some(2_140.0)]),
        });
        let card = store_card(0, &store).into_string();
        assert!(
            card.contains("Acme delivers in <b>2.1 s</b>, p50 today"),
            "{card}"
        );
        assert!(
            card.contains("href=\"/dashboard/charts?metric=lag&amp;store=acme\""),
            "{card}"
        );
        assert!(
            card.contains("latest 1970-01-02 · all: 4 (incomplete"),
            "{card}"
        );
        assert_eq!(
            card.matches("<svg class=\"sparkline\"").count(),
            2,
            "{card}"
        );

        store.trends = Some(Trends {
            active: daily(
                ChartMetric::ActiveSubscriptions,
                "all",
                vec![Some(3.0), Some(4.0)],
            ),
            lag: daily(ChartMetric::Lag, "p50", vec![Some(900.0), None]),
        });
        let card = store_card(0, &store).into_string();
        assert!(card.contains("No notification today yet."), "{card}");
        assert!(store_card(0, &view(StoreStats::default()))
            .into_string()
            .find("sparkline")
            .is_none());
    }

    #[test]
    fn states_follow_the_latest_event() {
        let now = 20;
        let mut s = StoreStats::default();
        let state = |s: &StoreStats, at: i64| StoreState::of(&view(s.clone()), at);
        assert_eq!(state(&s, now), StoreState::Waiting);
        s.last_rejected_ms = Some(9);
        // Refusals before anything verified: red.
        assert_eq!(state(&s, now), StoreState::Rejecting);
        s.last_verified_ms = Some(10);
        assert_eq!(state(&s, now), StoreState::UntrackedOnly);
        s.last_received_ms = Some(10);
        assert_eq!(state(&s, now), StoreState::Connected);
        // A refusal after a verified notification only warns while the store
        // keeps delivering…
        s.last_rejected_ms = Some(11);
        assert_eq!(state(&s, now), StoreState::RefusingSome);
        // …and turns red once nothing verified has come for a day.
        assert_eq!(state(&s, 10 + DELIVERING_FOR_MS), StoreState::Rejecting);
        s.last_verified_ms = Some(12);
        assert_eq!(state(&s, now), StoreState::Connected);
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
        let html = store_card(61_000, &view(stats)).into_string();
        assert!(html.contains("rejecting deliveries"), "{html}");
        assert!(
            html.contains("signature did not match any configured Acme signing secret"),
            "{html}"
        );
        assert!(html.contains("1 minute ago"), "{html}");
        assert!(html.contains("https://hooks.example.com/v1/notifications/acme"));
        // Unknown codes fall back to the adapter's message.
        assert_eq!(
            rejection_text(
                &ACME,
                Some("wrong_key"),
                Some("x-example-key does not match")
            ),
            "x-example-key does not match"
        );
    }

    #[test]
    fn known_codes_read_as_plain_words() {
        assert_eq!(
            rejection_text(&ACME, Some("bad_signature"), Some("m")),
            "signature did not match any configured Acme signing secret"
        );
        // The host's own codes, whatever the store.
        assert_eq!(
            rejection_text(&StoreHelp::DEFAULT, Some("payload_too_large"), Some("m")),
            "the body was larger than [server] max_body_bytes"
        );
        // Codes are per store: another store's help does not know Acme's.
        assert_eq!(
            rejection_text(&StoreHelp::DEFAULT, Some("bad_signature"), None),
            "bad_signature"
        );
        assert_eq!(
            rejection_text(&StoreHelp::DEFAULT, None, None),
            "no reason recorded"
        );
    }

    #[test]
    fn a_plugins_help_is_text_with_code_and_names_marked() {
        let html = store_card(0, &view(StoreStats::default())).into_string();
        assert!(html.contains("<details id=\"setup-acme\" open>"), "{html}");
        assert!(
            html.contains("<summary>Set up in the Acme &lt;console&gt;</summary>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<li>In <b>Hooks</b>, paste <code>https://hooks.example.com/v1/notifications/acme</code>.</li>"
            ),
            "{html}"
        );
        // Markup in a plugin's text is shown, never obeyed.
        assert!(
            html.contains("<li>Then &lt;b&gt;restart&lt;/b&gt; &amp; wait.</li>"),
            "{html}"
        );
        assert!(
            html.contains("<p class=\"test\"><b>Test:</b> Press <b>Ping</b>: the card shows <b>connected</b>.</p>"),
            "{html}"
        );
        // Without its own help a store gets the generic steps.
        let mut v = view(StoreStats::default());
        v.help = &StoreHelp::DEFAULT;
        let html = store_card(0, &v).into_string();
        assert!(html.contains("Set up in the store's console"), "{html}");
        assert!(html.contains("set the server notification URL to <code>https://hooks.example.com/v1/notifications/acme</code>"), "{html}");
    }

    #[test]
    fn values_are_escaped() {
        let n = StoredNotification {
            id: 7,
            store: "example".into(),
            notification_id: "<img src=x onerror=alert(1)>".into(),
            received_at_ms: 0,
            verdict: Verdict::Rejected,
            subscription_id: Some("\"><script>".into()),
            event_type: None,
            raw_type: Some("<b>odd</b>".into()),
            environment: None,
            occurred_at_ms: None,
            product_id: Some("<i>p</i>".into()),
            state: None,
            attention: Some("<u>a</u>".into()),
            rejection_code: Some("<s>code</s>".into()),
            rejection_message: Some("<em>message</em>".into()),
            source: storehook_db::Source::Push,
        };
        let html = notification_detail(
            0,
            &n,
            "Ex<ample>",
            &StoreHelp::DEFAULT,
            &serde_json::json!({"k": "</code><script>"}),
        )
        .into_string();
        for raw in [
            "<script>",
            "<img",
            "<b>odd",
            "<i>p",
            "<u>a",
            "<s>code",
            "<em>",
            "Ex<ample>",
        ] {
            assert!(!html.contains(raw), "{raw}: {html}");
        }
        assert!(html.contains("&lt;/code&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;em&gt;message&lt;/em&gt;"), "{html}");
        let rows = notification_rows(0, &[n], &|s| s.to_owned(), true).into_string();
        assert!(
            !rows.contains("<script>") && !rows.contains("<b>odd") && !rows.contains("<s>code"),
            "{rows}"
        );
    }
}
