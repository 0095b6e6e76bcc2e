//! Reflex configuration: TOML with an embedded default (flood detection whose reaction
//! blocks the source; every host starts authenticated, so a fresh reflexd never cuts a
//! network off), checked as a whole at load so that a bad file fails with one clear message.
//! The classic experiment (hosts start cleared) is examples/classic.toml.
//!
//! The cores do not read this file's types: [`Config::build`] turns it into the specs
//! `flow` and `policy` define ([`FlowSpec`], [`PolicySpec`], …) and builds them once;
//! `reflexd --check-config` and the daemon's start-up run that same function.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::flow::definition::ValueKind;
use crate::flow::spec::EngineError;
use crate::flow::{FlowSet, FlowSpec, ThresholdScope, ThresholdSpec};
use crate::openflow::learning::LearningConfig;
use crate::policy::engine::{PolicyConfigError, PolicyEngine};
use crate::policy::spec::{AssertionSpec, ModuleSpec, PolicySpec, ReactionSpec, ThresholdKey};

/// The embedded default configuration, as TOML text.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(transparent)]
    Flow(#[from] EngineError),
    #[error(transparent)]
    Policy(#[from] PolicyConfigError),
    #[error("{0}")]
    Openflow(String),
}

/// The cores a configuration specifies, validated and built once: what
/// `reflexd --check-config` accepts is exactly what the daemon starts with.
pub struct Built {
    /// Flows and thresholds; every ingest worker builds its engine from them.
    pub flows: FlowSet,
    /// The policy engine, modules restored to their initial states.
    pub policy: PolicyEngine,
    /// Reactive learning, when the policy uses `learn`.
    pub learning: Option<LearningConfig>,
}

/// The whole daemon configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sflow: SflowConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default, rename = "flow")]
    pub flows: Vec<FlowConfig>,
    #[serde(default, rename = "threshold")]
    pub thresholds: Vec<ThresholdConfig>,
    #[serde(default)]
    pub openflow: OpenflowConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default, rename = "reaction")]
    pub reactions: Vec<ReactionConfig>,
    #[serde(default, rename = "assertion")]
    pub assertions: Vec<AssertionConfig>,
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
}

/// OpenFlow controller settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenflowConfig {
    /// Where switches connect.
    pub listen: SocketAddr,
    /// Seconds of silence before we send an echo request.
    pub echo_interval: f64,
    /// Seconds without any message before a switch is declared dead.
    pub echo_timeout: f64,
    /// Table of the reactive MAC-learning module that `learn` sends packets to (used only
    /// when the policy mentions `learn`). Must lie beyond the compiler's tables: the
    /// default, 251, is the first table no pipeline can use (the compiler refuses more than
    /// [`MAX_TABLES`](crate::policy::compile::MAX_TABLES), ids 0..=250); a smaller one is
    /// checked against the compiled pipeline at start. At most 253: Open vSwitch keeps 254
    /// for itself and 255 means "all tables".
    pub learning_table: u8,
    /// MACs each switch's learning table holds (fixed memory; the oldest is overwritten).
    pub learning_macs: usize,
    /// Seconds without traffic before the switch removes a learnt flow (0 = never).
    pub learning_idle_timeout: u16,
    /// Install every IP entry that drops or meters traffic as four entries, one per ECN
    /// value, so that Open vSwitch's datapath cache cannot keep a host blocked after its
    /// re-admission (userspace datapath before Open vSwitch 3.1.3; see `lower::table`).
    /// Same semantics, three more entries per such rule; `false` on switches without the
    /// defect.
    pub stale_flow_guard: bool,
}

/// Default [`OpenflowConfig::learning_table`].
pub const DEFAULT_LEARNING_TABLE: u8 = crate::policy::compile::MAX_TABLES as u8;

impl Default for OpenflowConfig {
    fn default() -> Self {
        OpenflowConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6653)),
            echo_interval: 5.0,
            echo_timeout: 15.0,
            learning_table: DEFAULT_LEARNING_TABLE,
            learning_macs: 4096,
            learning_idle_timeout: 60,
            stale_flow_guard: true,
        }
    }
}

/// Where state that survives restarts is kept.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the FSM journal.
    pub dir: PathBuf,
    /// Journal records after which the journal is compacted into a snapshot.
    pub compact_after: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/tmp/reflexd-state"),
            compact_after: 10_000,
        }
    }
}

/// A per-key state machine.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    pub name: String,
    /// What instances are keyed by: ipv4, ipv6, mac or port, or a comma list of fields
    /// (`ipdestination,udpsourceport`; policy names such as `ip_dst` also do).
    pub key: String,
    /// The packet field the key selects (default: the source field of that kind).
    #[serde(default)]
    pub field: Option<String>,
    pub initial: String,
    /// Allowed transitions as [from, to] pairs; absent = any.
    #[serde(default)]
    pub transitions: Option<Vec<(String, String)>>,
    /// State name → policy expression.
    pub states: std::collections::BTreeMap<String, String>,
}

/// The composed policy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The top-level policy expression, e.g. `auth >> normal`.
    pub main: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            main: "normal".into(),
        }
    }
}

/// What to do when a threshold fires.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionConfig {
    pub threshold: String,
    pub module: String,
    pub state: String,
    /// Seconds to hold the state, then return (`then`, or the previous state); absent = keep.
    #[serde(default)]
    pub hold: Option<f64>,
    #[serde(default)]
    pub then: Option<String>,
    /// Keys (CIDR prefixes for address keys) never touched by this reaction.
    #[serde(default)]
    pub whitelist: Vec<String>,
    /// Log what would be done, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// An invariant checked on the compiled tables.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    pub name: String,
    pub module: String,
    pub state: String,
    /// Whether packets of an instance in that state may be forwarded anywhere.
    pub forwards: bool,
}

/// sFlow ingest settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SflowConfig {
    pub listen: SocketAddr,
    pub workers: usize,
    pub rcvbuf: usize,
    pub batch: usize,
    /// Microseconds a worker pauses after a short batch of a busy stream, so that the next
    /// receive takes a fuller one (0 = never; see `io::mmsg::BatchWait`).
    pub batch_wait_us: u64,
    pub pin: bool,
}

impl Default for SflowConfig {
    fn default() -> Self {
        SflowConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6343)),
            workers: 0,
            rcvbuf: 32 << 20,
            batch: 64,
            batch_wait_us: 100,
            pin: true,
        }
    }
}

/// Control socket settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// A group allowed to use the socket (mode 0660 then); none = owner only (0600).
    pub group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: None,
        }
    }
}

/// Where reflexd listens for reflexctl unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/tmp/reflexd.sock";

/// A flow definition as written in the file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    pub name: String,
    pub keys: String,
    #[serde(default = "default_value")]
    pub value: String,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default = "default_t")]
    pub t: f64,
    #[serde(default = "default_width")]
    pub sketch_width: usize,
    #[serde(default = "default_depth")]
    pub sketch_depth: usize,
    #[serde(default = "default_top")]
    pub top: usize,
}

fn default_value() -> String {
    "frames".into()
}
fn default_t() -> f64 {
    1.0
}
fn default_width() -> usize {
    4096
}
fn default_depth() -> usize {
    4
}
fn default_top() -> usize {
    64
}

/// A threshold on a flow's per-key rate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    pub name: String,
    pub metric: String,
    pub value: f64,
    #[serde(default = "default_by_flow")]
    pub by_flow: bool,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Keys tracked as triggered at once (fixed memory).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Evidence needed before an event: the key's smoothed count must hold at least this
    /// many samples' worth (1 = the rate alone decides, as in sFlow-RT).
    #[serde(default = "default_min_samples")]
    pub min_samples: f64,
    /// `network` (default): the key's rate summed over every ingest worker, one event per
    /// crossing; `agent`: each worker's own rate and armed state (see
    /// [`ThresholdScope::Agent`]).
    #[serde(default)]
    pub scope: ThresholdScope,
}

fn default_min_samples() -> f64 {
    1.0
}

fn default_by_flow() -> bool {
    true
}
fn default_timeout() -> f64 {
    10.0
}
fn default_capacity() -> usize {
    4096
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::from_toml(DEFAULT_TOML, "embedded default")
    }

    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: one_line(&e),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Cross-checks that TOML alone cannot express.
    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for f in &self.flows {
            if !names.insert(f.name.as_str()) {
                return Err(format!("flow `{}` is defined twice", f.name));
            }
            if !(f.t.is_finite() && f.t > 0.0) {
                return Err(format!(
                    "flow `{}`: t must be a positive number of seconds",
                    f.name
                ));
            }
            if !(16..=1 << 24).contains(&f.sketch_width) {
                return Err(format!(
                    "flow `{}`: sketch_width must be 16..=16777216",
                    f.name
                ));
            }
            if !(1..=16).contains(&f.sketch_depth) {
                return Err(format!("flow `{}`: sketch_depth must be 1..=16", f.name));
            }
            if !(1..=100_000).contains(&f.top) {
                return Err(format!("flow `{}`: top must be 1..=100000", f.name));
            }
        }
        let mut tnames = std::collections::HashSet::new();
        for t in &self.thresholds {
            if !tnames.insert(t.name.as_str()) {
                return Err(format!("threshold `{}` is defined twice", t.name));
            }
            if !names.contains(t.metric.as_str()) {
                return Err(format!(
                    "threshold `{}`: metric `{}` is not a defined flow",
                    t.name, t.metric
                ));
            }
            if !(t.value.is_finite() && t.value > 0.0) {
                return Err(format!("threshold `{}`: value must be positive", t.name));
            }
            if !(t.timeout.is_finite() && t.timeout >= 0.0) {
                return Err(format!(
                    "threshold `{}`: timeout must be >= 0 seconds",
                    t.name
                ));
            }
            if !(1..=1 << 20).contains(&t.capacity) {
                return Err(format!(
                    "threshold `{}`: capacity must be 1..=1048576",
                    t.name
                ));
            }
            if !(t.min_samples.is_finite() && (0.0..=1e6).contains(&t.min_samples)) {
                return Err(format!(
                    "threshold `{}`: min_samples must be between 0 and 1000000",
                    t.name
                ));
            }
        }
        for r in &self.reactions {
            if !tnames.contains(r.threshold.as_str()) {
                return Err(format!("reaction on `{}`: no such threshold", r.threshold));
            }
            if let Some(h) = r.hold {
                if !(h.is_finite() && h > 0.0) {
                    return Err(format!(
                        "reaction on `{}`: hold must be positive",
                        r.threshold
                    ));
                }
            }
        }
        if !(self.openflow.echo_interval > 0.0
            && self.openflow.echo_timeout > self.openflow.echo_interval)
        {
            return Err("openflow: need 0 < echo_interval < echo_timeout".into());
        }
        // Table 0 is where every pipeline starts; OVS keeps 254 (255 is OFPTT_ALL).
        if !(1..=253).contains(&self.openflow.learning_table) {
            return Err("openflow.learning_table must be 1..=253".into());
        }
        if !(16..=1 << 24).contains(&self.openflow.learning_macs) {
            return Err("openflow.learning_macs must be 16..=16777216".into());
        }
        if !(1..=1024).contains(&self.sflow.batch) {
            return Err("sflow.batch must be 1..=1024".into());
        }
        if self.sflow.batch_wait_us > 10_000 {
            return Err("sflow.batch_wait_us must be at most 10000 (10 ms)".into());
        }
        if self.sflow.workers > 256 {
            return Err("sflow.workers must be at most 256".into());
        }
        Ok(())
    }

    /// The flow and threshold specs this file states.
    pub fn flow_specs(&self) -> Result<(Vec<FlowSpec>, Vec<ThresholdSpec>), EngineError> {
        let flows = self
            .flows
            .iter()
            .map(|f| {
                let value = match f.value.as_str() {
                    "frames" => ValueKind::Frames,
                    "bytes" => ValueKind::Bytes,
                    other => {
                        return Err(EngineError {
                            flow: f.name.clone(),
                            message: format!("value `{other}` is not frames or bytes"),
                        })
                    }
                };
                Ok(FlowSpec {
                    name: f.name.clone(),
                    keys: f.keys.clone(),
                    value,
                    filter: f.filter.clone(),
                    t: f.t,
                    sketch_width: f.sketch_width,
                    sketch_depth: f.sketch_depth,
                    top: f.top,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let thresholds = self
            .thresholds
            .iter()
            .map(|t| ThresholdSpec {
                name: t.name.clone(),
                flow: t.metric.clone(),
                value: t.value,
                by_flow: t.by_flow,
                timeout_s: t.timeout,
                capacity: t.capacity,
                min_samples: t.min_samples,
                scope: t.scope,
            })
            .collect();
        Ok((flows, thresholds))
    }

    /// The flows and thresholds, validated.
    pub fn flow_set(&self) -> Result<FlowSet, ConfigError> {
        let (flows, thresholds) = self.flow_specs()?;
        Ok(FlowSet::new(&flows, &thresholds)?)
    }

    /// The policy spec this file states; thresholds take their key layout from `flows`.
    pub fn policy_spec(&self, flows: &FlowSet) -> PolicySpec {
        PolicySpec {
            modules: self
                .modules
                .iter()
                .map(|m| ModuleSpec {
                    name: m.name.clone(),
                    key: m.key.clone(),
                    field: m.field.clone(),
                    initial: m.initial.clone(),
                    transitions: m.transitions.clone(),
                    states: m
                        .states
                        .iter()
                        .map(|(s, p)| (s.clone(), p.clone()))
                        .collect(),
                })
                .collect(),
            main: self.policy.main.clone(),
            thresholds: flows
                .thresholds()
                .map(|(_, name, def)| ThresholdKey {
                    name: name.to_owned(),
                    fields: def.keys().to_vec(),
                })
                .collect(),
            reactions: self
                .reactions
                .iter()
                .map(|r| ReactionSpec {
                    threshold: r.threshold.clone(),
                    module: r.module.clone(),
                    state: r.state.clone(),
                    hold_s: r.hold,
                    then: r.then.clone(),
                    whitelist: r.whitelist.clone(),
                    dry_run: r.dry_run,
                })
                .collect(),
            assertions: self
                .assertions
                .iter()
                .map(|a| AssertionSpec {
                    name: a.name.clone(),
                    module: a.module.clone(),
                    state: a.state.clone(),
                    forwards: a.forwards,
                })
                .collect(),
        }
    }

    /// Validates and builds the cores: flows, the policy engine (reactions bound to their
    /// thresholds' keys) and reactive learning checked against the compiled pipeline.
    pub fn build(&self) -> Result<Built, ConfigError> {
        let flows = self.flow_set()?;
        let policy = PolicyEngine::new(&self.policy_spec(&flows))?;
        let learning = learning_config(&self.openflow, &policy)?;
        Ok(Built {
            flows,
            policy,
            learning,
        })
    }

    /// Worker threads to start: the configured count, or one per available core.
    pub fn worker_count(&self) -> usize {
        if self.sflow.workers > 0 {
            self.sflow.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Reactive learning settings when the policy uses `learn` (off otherwise), with the
/// learning table checked to lie beyond the compiled pipeline's tables.
fn learning_config(
    openflow: &OpenflowConfig,
    engine: &PolicyEngine,
) -> Result<Option<LearningConfig>, ConfigError> {
    if !engine.uses_learn() {
        return Ok(None);
    }
    let table = openflow.learning_table;
    let used = engine.table_count();
    if usize::from(table) < used {
        return Err(ConfigError::Openflow(format!(
            "openflow.learning_table = {table} collides with the compiled pipeline, which uses tables 0..={}; choose a table of {used} or more",
            used.saturating_sub(1)
        )));
    }
    Ok(Some(LearningConfig {
        table_id: table,
        idle_timeout: openflow.learning_idle_timeout,
        ..Default::default()
    }))
}

/// toml's errors span several lines (a source excerpt); operators want one line with the
/// position, which the first line carries.
fn one_line(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head = lines.next().unwrap_or("invalid TOML").trim_end_matches(':');
    let detail = text.lines().last().unwrap_or("").trim();
    if detail.is_empty() || detail == head {
        head.to_owned()
    } else {
        format!("{head}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// examples/classic.toml, the classic experiment (hosts start cleared).
    const CLASSIC_TOML: &str = include_str!("../../examples/classic.toml");
    /// examples/production.toml, the commented production starting point.
    const PRODUCTION_TOML: &str = include_str!("../../examples/production.toml");

    #[test]
    fn embedded_default_watches_the_classic_flow_and_starts_hosts_authenticated() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.modules.len(), 1);
        assert_eq!(c.modules[0].name, "auth");
        assert_eq!(c.modules[0].initial, "authenticated");
        assert_eq!(c.reactions.len(), 1);
        assert_eq!(
            (
                c.reactions[0].module.as_str(),
                c.reactions[0].state.as_str()
            ),
            ("auth", "clear")
        );
        assert_eq!(c.flows.len(), 1);
        assert_eq!(c.flows[0].name, "ddos");
        assert_eq!(c.flows[0].keys, "ipsource");
        assert_eq!(
            c.flows[0].filter.as_deref(),
            Some("outputifindex!=discard&direction=ingress&icmptype!=0")
        );
        assert_eq!(c.thresholds[0].metric, "ddos");
        assert_eq!(c.sflow.listen.port(), 6343);
    }

    /// The output ports a compiled policy gives an IPv4 packet from `src` (or an ARP frame).
    fn outputs(policy: &PolicyEngine, src: [u8; 4], arp: bool) -> Vec<crate::policy::Out> {
        use crate::policy::{run_pipeline, Field, Packet};
        let mut pkt = Packet::new(1);
        pkt = if arp {
            pkt.with(Field::EthType, 0x0806)
        } else {
            pkt.with(Field::EthType, 0x0800)
                .with(Field::Ipv4Src, u128::from(u32::from_be_bytes(src)))
        };
        run_pipeline(&policy.rules(), &|_| None, &pkt)
            .into_iter()
            .filter_map(|p| p.out)
            .collect()
    }

    /// The safe default: a host reflexd has never heard of is forwarded; once the `ddos`
    /// reaction fires on it, its IPv4 is dropped (ARP still passes) until it is
    /// re-authenticated.
    #[test]
    fn the_default_forwards_an_unknown_host_until_its_flood_clears_it() {
        use crate::flow::key::FlowKey;
        use crate::flow::ThresholdId;
        use crate::policy::engine::ReactionOutcome;
        use crate::policy::{Event, Out};
        let built = Config::embedded().unwrap().build().unwrap();
        let mut policy = built.policy;
        let h1 = [10, 0, 0, 1];
        assert_eq!(policy.state("auth", "10.0.0.1").unwrap(), "authenticated");
        assert_eq!(outputs(&policy, h1, false), vec![Out::Normal]);
        assert!(policy.check().is_empty(), "{:?}", policy.check());

        let ddos = built
            .flows
            .thresholds()
            .find(|(_, name, _)| *name == "ddos")
            .map(|(id, _, _)| id)
            .unwrap();
        assert_eq!(ddos, ThresholdId(0));
        let mut key = FlowKey::EMPTY;
        assert!(key.push(&h1));
        let outcomes = policy.react(ddos, &key, 1);
        assert_eq!(outcomes.len(), 1);
        assert!(
            matches!(outcomes[0].0, ReactionOutcome::Applied(_)),
            "{:?}",
            outcomes[0].0
        );
        assert!(!outcomes[0].1.added.is_empty(), "the block adds a rule");
        assert_eq!(policy.state("auth", "10.0.0.1").unwrap(), "clear");
        assert!(outputs(&policy, h1, false).is_empty(), "h1's IPv4 dropped");
        assert_eq!(outputs(&policy, h1, true), vec![Out::Normal], "ARP passes");
        assert_eq!(outputs(&policy, [10, 0, 0, 2], false), vec![Out::Normal]);
        assert!(policy.check().is_empty(), "{:?}", policy.check());

        let readmit = Event {
            module: "auth".into(),
            key: "10.0.0.1".into(),
            state: "authenticated".into(),
            hold_ns: None,
            then: None,
        };
        let _ = policy.apply_event(&readmit, 2).unwrap();
        assert_eq!(outputs(&policy, h1, false), vec![Out::Normal]);
    }

    /// examples/classic.toml is the embedded default but for the hosts' initial state.
    #[test]
    fn the_classic_example_is_the_default_with_hosts_starting_cleared() {
        let classic = Config::from_toml(CLASSIC_TOML, "examples/classic.toml").unwrap();
        assert_eq!(classic.modules[0].initial, "clear");
        let mut default = Config::embedded().unwrap();
        default.modules[0].initial = "clear".into();
        assert_eq!(
            toml::to_string(&classic).unwrap(),
            toml::to_string(&default).unwrap()
        );
        // A host not yet authenticated has no IPv4 through.
        let policy = classic.build().unwrap().policy;
        assert_eq!(policy.state("auth", "10.0.0.1").unwrap(), "clear");
        assert!(outputs(&policy, [10, 0, 0, 1], false).is_empty());
        assert_eq!(
            outputs(&policy, [10, 0, 0, 1], true),
            vec![crate::policy::Out::Normal]
        );
        assert!(policy.check().is_empty(), "{:?}", policy.check());
    }

    #[test]
    fn the_production_example_is_the_safe_default_with_deployment_paths() {
        let c = Config::from_toml(PRODUCTION_TOML, "examples/production.toml").unwrap();
        assert_eq!(c.modules[0].initial, "authenticated");
        assert_eq!(c.control.socket, PathBuf::from("/run/reflex/reflexd.sock"));
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/reflex"));
        assert!(c.openflow.stale_flow_guard);
        let built = c.build().unwrap();
        assert!(built.policy.check().is_empty());
        assert_eq!(
            outputs(&built.policy, [10, 0, 0, 1], false),
            vec![crate::policy::Out::Normal]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Config::from_toml("[sflow]\nlisten = 6343\n", "x.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("x.toml: "), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[sflow]\nlisen = \"0.0.0.0:1\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn threshold_on_missing_flow_is_rejected() {
        let text = "[[threshold]]\nname='a'\nmetric='nope'\nvalue=1.0\n";
        let err = Config::from_toml(text, "x").unwrap_err();
        assert!(err.to_string().contains("metric `nope`"), "{err}");
    }

    #[test]
    fn learning_options_have_defaults_and_bounds() {
        let c = Config::from_toml("", "x").unwrap();
        assert_eq!(c.openflow.learning_table, DEFAULT_LEARNING_TABLE);
        assert_eq!(c.openflow.learning_macs, 4096);
        assert_eq!(c.openflow.learning_idle_timeout, 60);
        let c = Config::from_toml("[openflow]\nlearning_table = 9\n", "x").unwrap();
        assert_eq!(c.openflow.learning_table, 9);
        for bad in [
            "learning_table = 0",
            "learning_table = 254",
            "learning_macs = 1",
        ] {
            let err = Config::from_toml(&format!("[openflow]\n{bad}\n"), "x").unwrap_err();
            assert!(
                err.to_string().contains("openflow.learning_"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn batch_wait_is_bounded_and_can_be_switched_off() {
        let wait = |text: &str| Config::from_toml(&format!("[sflow]\n{text}\n"), "x");
        assert_eq!(wait("batch_wait_us = 0").unwrap().sflow.batch_wait_us, 0);
        assert_eq!(
            wait("batch_wait_us = 10000").unwrap().sflow.batch_wait_us,
            10_000
        );
        let err = wait("batch_wait_us = 10001").unwrap_err().to_string();
        assert!(err.contains("sflow.batch_wait_us"), "{err}");
        assert!(wait("batch_wait_us = -1").is_err());
        assert_eq!(Config::embedded().unwrap().sflow.batch_wait_us, 100);
    }

    #[test]
    fn min_samples_out_of_range_is_refused() {
        let text = "[[flow]]\nname = \"f\"\nkeys = \"ipsource\"\n[[threshold]]\nname = \"f\"\n\
                    metric = \"f\"\nvalue = 1.0\nmin_samples = -1.0\n";
        let e = Config::from_toml(text, "test").unwrap_err().to_string();
        assert!(e.contains("min_samples"), "{e}");
    }

    #[test]
    fn the_embedded_default_builds() {
        let built = Config::embedded().unwrap().build().unwrap();
        assert_eq!(built.flows.defs().len(), 1);
        assert!(built.policy.check().is_empty());
        assert_eq!(built.learning, None);
    }

    #[test]
    fn build_errors_name_the_part_at_fault() {
        let mut c = Config::embedded().unwrap();
        c.flows[0].value = "packets".into();
        let e = c.build().err().unwrap().to_string();
        assert_eq!(e, "flow `ddos`: value `packets` is not frames or bytes");
        let mut c = Config::embedded().unwrap();
        c.modules[0].key = "ipv5".into();
        let e = c.build().err().unwrap().to_string();
        assert!(
            e.starts_with("module `auth`: key `ipv5` is not ipv4, ipv6, mac or port"),
            "{e}"
        );
        let mut c = Config::embedded().unwrap();
        c.flows[0].keys = "ipdestination".into();
        let e = c.build().err().unwrap().to_string();
        assert!(
            e.contains("key field ip_src is not among the flow's key fields"),
            "{e}"
        );
    }

    #[test]
    fn header_fields_openflow_cannot_match_are_flow_keys_but_not_module_keys() {
        for field in ["ipttl", "ipflags", "ipfragoffset", "tcpflags"] {
            let mut c = Config::embedded().unwrap();
            c.flows[0].keys = format!("ipsource,{field}");
            c.modules[0].key = format!("ipsource,{field}");
            let e = c.build().err().unwrap().to_string();
            assert!(
                e.contains(&format!("`{field}` cannot key a module"))
                    && e.contains("OpenFlow 1.3")
                    && e.contains("flow key"),
                "{e}"
            );
            // As a flow key (and in filters) it is fine.
            let mut c = Config::embedded().unwrap();
            c.flows[0].keys = format!("ipsource,{field}");
            c.flows[0].filter = Some(format!("{field}!=0x0"));
            c.build().unwrap();
        }
        // ip6nexthdr is OpenFlow's ip_proto: a module may be keyed by it.
        let mut c = Config::embedded().unwrap();
        c.flows[0].keys = "ip6destination,ip6nexthdr".into();
        c.modules[0].key = "ip6nexthdr".into();
        c.build().unwrap();
    }

    #[test]
    fn learning_is_on_only_with_learn_and_its_table_must_clear_the_pipeline() {
        let mut config = Config::embedded().unwrap();
        assert_eq!(config.build().unwrap().learning, None);
        config.policy.main = "auth >> learn".into();
        let built = config.build().unwrap();
        assert_eq!(built.policy.table_count(), 2);
        let l = built.learning.unwrap();
        assert_eq!((l.table_id, l.idle_timeout), (251, 60));
        config.openflow.learning_table = 2;
        assert_eq!(config.build().unwrap().learning.unwrap().table_id, 2);
        config.openflow.learning_table = 1;
        let err = config.build().err().unwrap().to_string();
        assert!(err.contains("collides"), "{err}");
    }

    #[test]
    fn empty_file_gets_defaults() {
        let c = Config::from_toml("", "x").unwrap();
        assert_eq!(c.sflow.batch, 64);
        assert_eq!(c.sflow.batch_wait_us, 100);
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(c.worker_count() >= 1);
    }
}
