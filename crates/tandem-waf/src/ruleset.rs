//! Loading SecLang into a compiled, immutable rule set.
//!
//! Everything is compiled here, once: regular expressions, phrase sets, data files,
//! transformation chains (interned into a trie so transactions can cache every prefix), and
//! `skipAfter` targets. A [`RuleSet`] is shared read-only by every transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LoadError;
use crate::operator::Operator;
use crate::prefilter::{ByteSet, LiteralInterner, LiteralTable};
use crate::rule::Effect;
use crate::rule::{Actions, Disruptive, EngineMode, Rule, id_ranges};
use crate::seclang::{Directive, parse_actions, parse_operator, parse_variables, split_directives};
use crate::transform::Transform;
use crate::txvars::TxLayout;
use crate::variable::Target;
use crate::variable::{Key, Var};

/// Engine-wide settings from `Sec*` directives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SecRuleEngine`
    pub engine: EngineMode,
    /// `SecRequestBodyAccess`
    pub request_body_access: bool,
    /// `SecResponseBodyAccess`
    pub response_body_access: bool,
    /// `SecRequestBodyLimit`
    pub request_body_limit: usize,
    /// `SecRequestBodyNoFilesLimit`
    pub request_body_no_files_limit: usize,
    /// `SecRequestBodyLimitAction Reject` (else ProcessPartial)
    pub request_body_limit_reject: bool,
    /// `SecResponseBodyLimit`
    pub response_body_limit: usize,
    /// `SecResponseBodyMimeType`
    pub response_body_mime_types: Vec<String>,
    /// `SecArgumentSeparator`
    pub argument_separator: u8,
    /// `SecArgumentsLimit`
    pub arguments_limit: usize,
    /// `SecRequestBodyJsonDepthLimit`
    pub json_depth_limit: usize,
    /// `SecComponentSignature`s
    pub component_signatures: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: EngineMode::DetectionOnly,
            request_body_access: true,
            response_body_access: false,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 131_072,
            request_body_limit_reject: true,
            response_body_limit: 524_288,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            argument_separator: b'&',
            arguments_limit: 1000,
            json_depth_limit: 1024,
            component_signatures: Vec::new(),
        }
    }
}

/// Interned transformation chains: node 0 is the empty chain; each other node is its parent
/// plus one transformation.
#[derive(Debug, Default)]
pub struct TransformTrie {
    nodes: Vec<(u16, Option<Transform>)>,
    index: HashMap<(u16, Transform), u16>,
    paths: Vec<Vec<(u16, Transform)>>,
    /// Per node: the bytes without which the whole chain leaves a value unchanged (`None`
    /// when some step may change any value).
    triggers: Vec<Option<ByteSet>>,
    /// This trie's identity in the per-thread chain memo (0: not memoised).
    pub(crate) memo_id: u64,
}

impl TransformTrie {
    fn new() -> Self {
        TransformTrie {
            nodes: vec![(0, None)],
            index: HashMap::new(),
            paths: vec![Vec::new()],
            triggers: vec![Some([0; 4])],
            memo_id: crate::memo::new_owner(),
        }
    }

    /// The trigger bytes of the chain ending at `node` (see [`Transform::triggers`]).
    pub fn triggers(&self, node: u16) -> Option<&ByteSet> {
        self.triggers
            .get(usize::from(node))
            .and_then(Option::as_ref)
    }

    fn intern(&mut self, chain: &[Transform]) -> Result<u16, String> {
        let mut node = 0u16;
        for &t in chain {
            node = match self.index.get(&(node, t)) {
                Some(&n) => n,
                None => {
                    let n = u16::try_from(self.nodes.len())
                        .map_err(|_| "too many distinct transformation chains".to_string())?;
                    self.nodes.push((node, Some(t)));
                    let mut path = self.paths[node as usize].clone();
                    path.push((n, t));
                    self.paths.push(path);
                    let trig = match (self.triggers[usize::from(node)], t.triggers()) {
                        (Some(a), Some(b)) => {
                            Some([a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]])
                        }
                        _ => None,
                    };
                    self.triggers.push(trig);
                    self.index.insert((node, t), n);
                    n
                }
            };
        }
        Ok(node)
    }

    /// The steps from the empty chain to `node`: each step's node id and transformation.
    pub fn path(&self, node: u16) -> &[(u16, Transform)] {
        self.paths.get(node as usize).map_or(&[], Vec::as_slice)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the empty chain exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// One entry of a phase's rule list.
#[derive(Debug, Clone)]
pub enum Item {
    /// A rule (with its chain).
    Rule(Arc<Rule>),
    /// A `SecMarker`.
    Marker(Arc<str>),
}

/// What the rule loop reads of every item before it evaluates a rule, one array per phase
/// parallel to [`RuleSet::phase`]: a rule that is skipped (refused by the literal
/// prefilter) costs a read of this array, not a visit to its [`Rule`] (a dozen cache lines
/// spread over the heap; a benign request at PL1 skips about 150 of the 390 rules it meets).
#[derive(Debug, Clone, Default)]
pub(crate) struct Hot {
    /// Whether the item is a rule (not a marker).
    pub(crate) is_rule: bool,
    /// Whether the prefilter decides for the whole rule (`Rule::prefilter_rule` with a
    /// prefilter); `set_slot`, `bytes` and `bit` are its inputs.
    pub(crate) decided: bool,
    /// [`Rule::set_slot`].
    pub(crate) set_slot: u32,
    /// The rule's [`Required`](crate::prefilter::Required) single bytes and literal bit.
    pub(crate) bytes: ByteSet,
    pub(crate) bit: Option<u32>,
}

impl Hot {
    fn of(item: &Item) -> Hot {
        let Item::Rule(r) = item else {
            return Hot::default();
        };
        let mut h = Hot {
            is_rule: true,
            ..Hot::default()
        };
        if r.prefilter_rule
            && let Some(req) = &r.prefilter
        {
            h.decided = true;
            h.set_slot = r.set_slot;
            h.bytes = req.bytes;
            h.bit = req.bit;
        }
        h
    }

    /// [`Required::may_match`](crate::prefilter::Required::may_match) on the copy.
    #[inline]
    pub(crate) fn may_match(&self, bytes: &ByteSet, bits: &[u64]) -> bool {
        crate::prefilter::bytes_intersect(&self.bytes, bytes)
            || self.bit.is_some_and(|b| {
                bits.get(b as usize / 64)
                    .is_some_and(|w| w & (1u64 << (b % 64)) != 0)
            })
    }
}

/// A compiled rule set.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) phases: [Vec<Item>; 5],
    /// [`Hot`] of every item of `phases`, index for index.
    pub(crate) hot: [Vec<Hot>; 5],
    pub(crate) markers: [HashMap<String, usize>; 5],
    pub(crate) trie: TransformTrie,
    /// Every multi-byte literal of every rule's prefilter.
    pub(crate) literals: LiteralTable,
    /// The TX names the rules use literally, with their slots.
    pub(crate) tx_layout: Arc<TxLayout>,
    /// How many union slots of each kind a transaction needs.
    pub(crate) union_slots: (u32, u32),
    /// Whether transactions use the literal prefilter (on unless turned off for testing).
    pub(crate) prefilter_enabled: bool,
    /// Whether links on one literally named TX variable take their shortcut (see
    /// [`RuleSet::set_tx_shortcut`]).
    pub(crate) tx_shortcut: bool,
    /// Whether transactions use the per-thread memo of transformation chains (see
    /// [`RuleSet::set_chain_memo`]).
    pub(crate) chain_memo: bool,
    /// Whether transactions use the per-thread operator memo (see [`RuleSet::set_op_memo`]).
    pub(crate) op_memo: bool,
    /// Rule links in the set (numbered from 1: [`Rule::link_no`]).
    pub(crate) links: u32,
    /// The set's owner id in the per-thread memo of link results, 0 when they are off (see
    /// [`RuleSet::set_link_results`]).
    pub(crate) results_owner: u64,
    /// Engine settings.
    pub settings: Settings,
}

impl RuleSet {
    /// The rules of a phase (1-5) in evaluation order.
    pub fn phase(&self, phase: u8) -> &[Item] {
        self.phases
            .get(usize::from(phase.saturating_sub(1)))
            .map_or(&[], Vec::as_slice)
    }

    /// [`Hot`] of the items of [`RuleSet::phase`], index for index.
    pub(crate) fn hot(&self, phase: u8) -> &[Hot] {
        self.hot
            .get(usize::from(phase.saturating_sub(1)))
            .map_or(&[], Vec::as_slice)
    }

    /// Number of rules (chains count once).
    pub fn rule_count(&self) -> usize {
        self.phases
            .iter()
            .flatten()
            .filter(|i| matches!(i, Item::Rule(_)))
            .count()
    }

    /// Every rule, in phase then file order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.phases.iter().flatten().filter_map(|i| match i {
            Item::Rule(r) => Some(r),
            Item::Marker(_) => None,
        })
    }

    /// Number of rules whose regular expression needed the backtracking engine.
    pub fn backtracking_patterns(&self) -> usize {
        fn count(r: &Rule) -> usize {
            let here = match &r.op.kind {
                crate::operator::OpKind::Rx(p) => usize::from(p.is_backtracking()),
                _ => 0,
            };
            here + r.chained.as_deref().map_or(0, count)
        }
        self.rules().map(|r| count(r)).sum()
    }

    /// How many rules (and chain links) have a literal prefilter, and how many of those the
    /// prefilter can decide for whole (every target is scanned request data).
    pub fn prefilter_stats(&self) -> (usize, usize, usize) {
        let (mut links, mut with, mut whole) = (0, 0, 0);
        for r in self.rules() {
            let mut l = Some(r.as_ref());
            while let Some(x) = l {
                links += 1;
                with += usize::from(x.prefilter.is_some());
                whole += usize::from(x.prefilter_rule);
                l = x.chained.as_deref();
            }
        }
        (links, with, whole)
    }

    /// Turn the literal prefilter off (or on again). It never changes what matches, only how
    /// much work a transaction does; the off switch exists to prove exactly that (the
    /// differential corpus test) and to measure what it saves.
    pub fn set_literal_prefilter(&mut self, on: bool) {
        self.prefilter_enabled = on;
    }

    /// Turn the shortcut for rules on one literally named, untransformed TX variable off or on
    /// (on by default). Off evaluates them the general way, for tests that compare the two.
    pub fn set_tx_shortcut(&mut self, on: bool) {
        self.tx_shortcut = on;
    }

    /// Turn the literal prefilter's per-thread scan memo off or on (on by default; see
    /// [`LiteralTable::scan`]). Off scans every value, to measure what the memo saves.
    pub fn set_scan_memo(&mut self, on: bool) {
        self.literals.set_memo(on);
    }

    /// Turn the per-thread memo of transformation chains off or on (on by default): a value
    /// of up to 256 bytes that a chain transformed on this thread recently gets the output
    /// remembered. Off runs every chain, to measure what the memo saves.
    pub fn set_chain_memo(&mut self, on: bool) {
        self.chain_memo = on;
    }

    /// Turn the per-thread operator memo off or on (on by default): a rule link's regex,
    /// phrase set, libinjection or validation result for a value of up to 256 bytes that it
    /// saw recently on this thread is remembered. Off runs every operator.
    pub fn set_op_memo(&mut self, on: bool) {
        self.op_memo = on;
    }

    /// Turn the per-value link results off or on (on by default): what each link whose
    /// result depends on the value alone said of a value is remembered per thread, and a
    /// rule none of whose values can match by those records is not visited (see
    /// [`crate::link_results`]). Off evaluates every rule the literal prefilter lets through.
    pub fn set_link_results(&mut self, on: bool) {
        self.results_owner = if on { crate::memo::new_owner() } else { 0 };
    }

    /// Number of distinct multi-byte literals the prefilter scans for, and the matcher used.
    pub fn prefilter_literals(&self) -> (usize, String) {
        (self.literals.len(), self.literals.kind())
    }

    /// Where `skipAfter:name` continues in a phase: the index after the marker (or rule).
    pub fn skip_target(&self, phase: u8, name: &str) -> Option<usize> {
        self.markers
            .get(usize::from(phase.saturating_sub(1)))
            .and_then(|m| m.get(name).copied())
    }

    /// The interned transformation chains (a rule's `tchain` is a node of it).
    pub fn trie(&self) -> &TransformTrie {
        &self.trie
    }
}

/// Builds a [`RuleSet`] from SecLang text and files.
#[derive(Debug)]
pub struct Loader {
    rules: Vec<Arc<Rule>>,
    /// Markers by position: (index into `order`, phase-less marker name).
    order: Vec<Entry>,
    defaults: [Option<Actions>; 5],
    trie: TransformTrie,
    settings: Settings,
    deferred_updates: Vec<DeferredUpdate>,
}

/// `SecRuleUpdateTargetById` waiting for the end of loading: (ids, targets, replaced, line).
type DeferredUpdate = (Vec<(u32, u32)>, String, String, usize);

#[derive(Debug)]
enum Entry {
    Rule(usize),
    Marker(Arc<str>),
}

const MAX_INCLUDE_DEPTH: usize = 16;

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// An empty loader with ModSecurity's defaults.
    pub fn new() -> Self {
        Loader {
            rules: Vec::new(),
            order: Vec::new(),
            defaults: Default::default(),
            trie: TransformTrie::new(),
            settings: Settings::default(),
            deferred_updates: Vec::new(),
        }
    }

    /// The settings so far (callers may override them before [`Loader::finish`]).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Load a file (following `Include`).
    pub fn add_file(&mut self, path: &Path) -> Result<(), LoadError> {
        self.add_file_depth(path, 0)
    }

    fn add_file_depth(&mut self, path: &Path, depth: usize) -> Result<(), LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.add_text_depth(&text, &path.display().to_string(), &dir, depth)
    }

    /// Load SecLang text; `label` names it in errors, `dir` resolves relative paths.
    pub fn add_text(&mut self, text: &str, label: &str, dir: &Path) -> Result<(), LoadError> {
        self.add_text_depth(text, label, dir, 0)
    }

    fn add_text_depth(
        &mut self,
        text: &str,
        label: &str,
        dir: &Path,
        depth: usize,
    ) -> Result<(), LoadError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(LoadError::IncludeDepth(
                MAX_INCLUDE_DEPTH,
                label.to_string(),
            ));
        }
        let directives =
            split_directives(text).map_err(|e| LoadError::invalid(label, e.line, e.message))?;
        let file: Arc<str> = Arc::from(label);
        let mut pending_chain: Vec<Rule> = Vec::new();
        for d in directives {
            let is_rule = d.name.eq_ignore_ascii_case("SecRule");
            if !pending_chain.is_empty() && !is_rule {
                return Err(LoadError::invalid(
                    label,
                    d.line,
                    "a rule with `chain` must be followed by the next SecRule of the chain",
                ));
            }
            self.directive(&d, &file, dir, depth, &mut pending_chain)
                .map_err(|e| match e {
                    DirError::Msg(m) => LoadError::invalid(label, d.line, m),
                    DirError::Load(l) => l,
                })?;
        }
        if !pending_chain.is_empty() {
            return Err(LoadError::invalid(
                label,
                pending_chain.last().map_or(0, |r| r.line),
                "the file ends inside a chain; the last rule of a chain must not have `chain`",
            ));
        }
        Ok(())
    }

    fn directive(
        &mut self,
        d: &Directive,
        file: &Arc<str>,
        dir: &Path,
        depth: usize,
        pending_chain: &mut Vec<Rule>,
    ) -> Result<(), DirError> {
        let arg = |i: usize| -> Result<&str, DirError> {
            d.args.get(i).map(String::as_str).ok_or_else(|| {
                DirError::Msg(format!("{} needs at least {} argument(s)", d.name, i + 1))
            })
        };
        let on_off = |s: &str| -> Result<bool, DirError> {
            match s.to_ascii_lowercase().as_str() {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err(DirError::Msg(format!(
                    "{} takes On or Off, not {s:?}",
                    d.name
                ))),
            }
        };
        let num = |s: &str| -> Result<usize, DirError> {
            s.parse()
                .map_err(|_| DirError::Msg(format!("{} takes a number, not {s:?}", d.name)))
        };
        match d.name.to_ascii_lowercase().as_str() {
            "secrule" => {
                let vars = arg(0)?;
                let op = arg(1)?;
                let actions = d.args.get(2).map(String::as_str).unwrap_or("");
                self.sec_rule(Some(vars), op, actions, file, dir, d.line, pending_chain)?;
            }
            "secaction" => {
                self.sec_rule(
                    None,
                    "@unconditionalMatch",
                    arg(0)?,
                    file,
                    dir,
                    d.line,
                    pending_chain,
                )?;
            }
            "secmarker" => {
                let name = arg(0)?;
                self.order.push(Entry::Marker(Arc::from(name)));
            }
            "secdefaultaction" => {
                let list = parse_actions(arg(0)?).map_err(DirError::Msg)?;
                let a = Actions::compile(&list).map_err(DirError::Msg)?;
                let phase = a.phase.ok_or_else(|| {
                    DirError::Msg(
                        "SecDefaultAction needs a phase, like \"phase:2,log,auditlog,pass\"".into(),
                    )
                })?;
                if a.disruptive.is_none() {
                    return Err(DirError::Msg(
                        "SecDefaultAction needs a disruptive action (pass, deny, ...)".into(),
                    ));
                }
                self.defaults[usize::from(phase - 1)] = Some(a);
            }
            "secruleremovebyid" => {
                let ranges = id_ranges(&d.args.join(" ")).map_err(DirError::Msg)?;
                self.remove_where(|r| ranges.iter().any(|&(a, b)| (a..=b).contains(&r.id)));
            }
            "secruleremovebytag" => {
                let tag = arg(0)?.to_string();
                self.remove_where(|r| r.has_tag(&tag));
            }
            "secruleremovebymsg" => {
                let msg = arg(0)?.to_string();
                self.remove_where(|r| {
                    r.msg().and_then(|m| m.as_literal()).as_deref() == Some(msg.as_str())
                });
            }
            "secruleupdatetargetbyid" => {
                let ranges = id_ranges(arg(0)?).map_err(DirError::Msg)?;
                let targets = arg(1)?.to_string();
                let replace = d.args.get(2).cloned().unwrap_or_default();
                self.deferred_updates
                    .push((ranges, targets, replace, d.line));
            }
            "secruleupdatetargetbytag" => {
                let tag = arg(0)?.to_string();
                let targets = arg(1)?;
                let raw = parse_variables(targets).map_err(DirError::Msg)?;
                let compiled = raw
                    .iter()
                    .map(Target::compile)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(DirError::Msg)?;
                self.update_targets(|r| r.has_tag(&tag), &compiled);
            }
            "secruleupdateactionbyid" => {
                let id: u32 = arg(0)?
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| DirError::Msg("SecRuleUpdateActionById needs a rule id".into()))?;
                let list = parse_actions(arg(1)?).map_err(DirError::Msg)?;
                let upd = Actions::compile(&list).map_err(DirError::Msg)?;
                self.update_actions(id, &upd)?;
            }
            "seccomponentsignature" => {
                self.settings.component_signatures.push(arg(0)?.to_string());
            }
            "secruleengine" => {
                self.settings.engine = EngineMode::parse(arg(0)?).ok_or_else(|| {
                    DirError::Msg("SecRuleEngine takes On, Off or DetectionOnly".into())
                })?;
            }
            "secrequestbodyaccess" => self.settings.request_body_access = on_off(arg(0)?)?,
            "secresponsebodyaccess" => self.settings.response_body_access = on_off(arg(0)?)?,
            "secrequestbodylimit" => self.settings.request_body_limit = num(arg(0)?)?,
            "secrequestbodynofileslimit" => {
                self.settings.request_body_no_files_limit = num(arg(0)?)?
            }
            "secrequestbodylimitaction" => {
                self.settings.request_body_limit_reject = arg(0)?.eq_ignore_ascii_case("reject")
            }
            "secresponsebodylimit" => self.settings.response_body_limit = num(arg(0)?)?,
            "secresponsebodymimetype" => {
                self.settings.response_body_mime_types =
                    d.args.iter().map(|s| s.to_ascii_lowercase()).collect();
            }
            "secresponsebodymimetypesclear" => self.settings.response_body_mime_types.clear(),
            "secargumentseparator" => {
                let s = arg(0)?;
                if s.len() != 1 {
                    return Err(DirError::Msg(
                        "SecArgumentSeparator takes one character".into(),
                    ));
                }
                self.settings.argument_separator = s.as_bytes()[0];
            }
            "secargumentslimit" => self.settings.arguments_limit = num(arg(0)?)?,
            "secrequestbodyjsondepthlimit" => self.settings.json_depth_limit = num(arg(0)?)?,
            "include" => {
                let pattern = arg(0)?;
                let files = glob(dir, pattern).map_err(DirError::Msg)?;
                if files.is_empty() {
                    return Err(DirError::Msg(format!("Include {pattern}: no file matches")));
                }
                for f in files {
                    self.add_file_depth(&f, depth + 1).map_err(DirError::Load)?;
                }
            }
            // Logging, storage and limits that belong to other parts of Tandem (the edge's
            // access log, its body limits) or to ModSecurity's process model.
            "secauditengine"
            | "secauditlog"
            | "secauditlogparts"
            | "secauditlogtype"
            | "secauditlogformat"
            | "secauditlogstoragedir"
            | "secauditlogrelevantstatus"
            | "secauditlogdirmode"
            | "secauditlogfilemode"
            | "secauditlog2"
            | "secdebuglog"
            | "secdebugloglevel"
            | "sectmpdir"
            | "secdatadir"
            | "secuploaddir"
            | "secuploadkeepfiles"
            | "secuploadfilemode"
            | "secuploadfilelimit"
            | "secpcrematchlimit"
            | "secpcrematchlimitrecursion"
            | "seccollectiontimeout"
            | "secresponsebodylimitaction"
            | "secstatusengine"
            | "sectmpsaveuploadedfiles"
            | "secunicodemapfile"
            | "seccookieformat"
            | "secserversignature"
            | "secwebappid"
            | "secsensorid"
            | "secrequestbodyinmemorylimit"
            | "secxmlexternalentity"
            | "secinterceptonerror"
            | "secconnengine"
            | "secgeolookupdb"
            | "sechashengine"
            | "sechashkey"
            | "sechashparam"
            | "sechashmethodrx"
            | "sechashmethodpm"
            | "secruleperftime"
            | "secstreaminbodyinspection"
            | "secstreamoutbodyinspection"
            | "secdisablebackendcompression"
            | "seccontentinjection"
            | "secremoterules"
            | "secremoterulesfailaction" => {}
            other => {
                return Err(DirError::Msg(format!(
                    "unknown directive {}; see docs/waf.md for the supported directives",
                    if other.is_empty() { "(empty)" } else { &d.name }
                )));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sec_rule(
        &mut self,
        vars: Option<&str>,
        op: &str,
        actions: &str,
        file: &Arc<str>,
        dir: &Path,
        line: usize,
        pending_chain: &mut Vec<Rule>,
    ) -> Result<(), DirError> {
        let list = parse_actions(actions).map_err(DirError::Msg)?;
        let acts = Actions::compile(&list).map_err(DirError::Msg)?;
        let is_link = !pending_chain.is_empty();
        let starter_phase = pending_chain.first().map(|r| r.phase);
        let phase = if is_link {
            if acts.phase.is_some() || acts.id.is_some() {
                return Err(DirError::Msg(
                    "a chained rule cannot have its own id or phase; put them on the first rule of the chain".into(),
                ));
            }
            starter_phase.unwrap_or(2)
        } else {
            acts.phase.unwrap_or(2)
        };
        if !is_link && acts.id.is_none() {
            return Err(DirError::Msg(
                "the rule has no id; add id:N to its actions".into(),
            ));
        }
        let (targets, exclusions) = match vars {
            Some(v) => {
                let raw = parse_variables(v).map_err(DirError::Msg)?;
                let mut t = Vec::new();
                let mut x = Vec::new();
                for r in &raw {
                    let c = Target::compile(r).map_err(DirError::Msg)?;
                    if c.exclude {
                        x.push(c);
                    } else {
                        t.push(c);
                    }
                }
                (t, x)
            }
            None => (Vec::new(), Vec::new()),
        };
        let operator = Operator::compile(&parse_operator(op), dir).map_err(DirError::Msg)?;
        let default = self.defaults[usize::from(phase - 1)].clone();
        // The default action's transformations come first unless the rule resets them.
        let mut chain: Vec<Transform> = Vec::new();
        if !acts.resets_transforms()
            && let Some(d) = &default
        {
            chain.extend(d.transforms.iter().flatten());
        }
        for t in &acts.transforms {
            match t {
                None => chain.clear(),
                Some(t) => chain.push(*t),
            }
        }
        let tchain = self.trie.intern(&chain).map_err(DirError::Msg)?;
        let default_disruptive = default
            .as_ref()
            .and_then(|d| d.disruptive.clone())
            .unwrap_or(Disruptive::Pass);
        let disruptive = match acts.disruptive.clone() {
            None | Some(Disruptive::Block) => match default_disruptive {
                Disruptive::Block => Disruptive::Pass,
                d => d,
            },
            Some(d) => d,
        };
        let status = acts
            .status
            .or_else(|| default.as_ref().and_then(|d| d.status))
            .unwrap_or(match disruptive {
                Disruptive::Redirect(_) => 302,
                _ => 403,
            });
        let log = acts
            .log
            .or_else(|| default.as_ref().and_then(|d| d.log))
            .unwrap_or(true);
        let id = if is_link {
            pending_chain.first().map_or(0, |r| r.id)
        } else {
            acts.id.unwrap_or(0)
        };
        let has_chain = acts.chain;
        let rule = Rule {
            id,
            phase,
            unconditional: vars.is_none(),
            targets,
            exclusions,
            op: operator,
            tchain,
            actions: acts,
            log,
            disruptive,
            status,
            chained: None,
            file: file.clone(),
            line,
            prefilter: None,
            prefilter_rule: false,
            target_slots: Vec::new(),
            set_slot: 0,
            skip_after_index: None,
            link_no: 0,
            pure: false,
        };
        pending_chain.push(rule);
        if has_chain {
            return Ok(());
        }
        // Fold the pending chain into one rule.
        let mut links = std::mem::take(pending_chain);
        let mut tail: Option<Box<Rule>> = None;
        while let Some(mut r) = links.pop() {
            r.chained = tail;
            tail = Some(Box::new(r));
        }
        if let Some(r) = tail {
            if self.rules.iter().any(|x| x.id == r.id) {
                return Err(DirError::Msg(format!(
                    "rule id {} is already used; every rule needs a unique id",
                    r.id
                )));
            }
            self.rules.push(Arc::new(*r));
            self.order.push(Entry::Rule(self.rules.len() - 1));
        }
        Ok(())
    }

    fn remove_where(&mut self, f: impl Fn(&Rule) -> bool) {
        let rules = &self.rules;
        self.order.retain(|e| match e {
            Entry::Rule(i) => !f(&rules[*i]),
            Entry::Marker(_) => true,
        });
    }

    fn live_rule_indices(&self) -> Vec<usize> {
        self.order
            .iter()
            .filter_map(|e| match e {
                Entry::Rule(i) => Some(*i),
                Entry::Marker(_) => None,
            })
            .collect()
    }

    fn update_targets(&mut self, f: impl Fn(&Rule) -> bool, targets: &[Target]) {
        for i in self.live_rule_indices() {
            if !f(&self.rules[i]) {
                continue;
            }
            if let Some(r) = Arc::get_mut(&mut self.rules[i]) {
                for t in targets {
                    if t.exclude {
                        r.exclusions.push(t.clone());
                    } else {
                        r.targets.push(t.clone());
                    }
                }
            }
        }
    }

    fn update_actions(&mut self, id: u32, upd: &Actions) -> Result<(), DirError> {
        let Some(i) = self
            .live_rule_indices()
            .into_iter()
            .find(|&i| self.rules[i].id == id)
        else {
            return Err(DirError::Msg(format!(
                "SecRuleUpdateActionById: rule {id} is not defined (yet)"
            )));
        };
        let Some(r) = Arc::get_mut(&mut self.rules[i]) else {
            return Ok(());
        };
        if let Some(d) = &upd.disruptive {
            r.disruptive = match d {
                Disruptive::Block => Disruptive::Pass,
                d => d.clone(),
            };
        }
        if let Some(s) = upd.status {
            r.status = s;
        }
        if let Some(l) = upd.log {
            r.log = l;
        }
        if upd.msg.is_some() {
            r.actions.msg = upd.msg.clone();
        }
        if upd.logdata.is_some() {
            r.actions.logdata = upd.logdata.clone();
        }
        if upd.severity.is_some() {
            r.actions.severity = upd.severity;
        }
        r.actions.tags.extend(upd.tags.iter().cloned());
        r.actions.effects.extend(upd.effects.iter().cloned());
        Ok(())
    }

    /// Finish loading: apply deferred target updates, resolve markers, build phases.
    pub fn finish(mut self) -> Result<RuleSet, LoadError> {
        for (ranges, targets, replace, line) in std::mem::take(&mut self.deferred_updates) {
            let raw = parse_variables(&targets)
                .map_err(|e| LoadError::invalid("SecRuleUpdateTargetById", line, e))?;
            let compiled = raw
                .iter()
                .map(Target::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LoadError::invalid("SecRuleUpdateTargetById", line, e))?;
            if !replace.is_empty() {
                // Replace one target by others: drop the named target first.
                if let Ok(old) = parse_variables(&replace) {
                    let old: Vec<Target> =
                        old.iter().filter_map(|r| Target::compile(r).ok()).collect();
                    for i in self.live_rule_indices() {
                        let rid = self.rules[i].id;
                        if ranges.iter().any(|&(a, b)| (a..=b).contains(&rid))
                            && let Some(r) = Arc::get_mut(&mut self.rules[i])
                        {
                            r.targets.retain(|t| {
                                !old.iter().any(|o| o.var == t.var && o.key.same_as(&t.key))
                            });
                        }
                    }
                }
            }
            self.update_targets(
                |r| ranges.iter().any(|&(a, b)| (a..=b).contains(&r.id)),
                &compiled,
            );
        }
        // Where skipAfter continues, per phase: after the marker (or the rule with that id).
        let mut markers: [HashMap<String, usize>; 5] = Default::default();
        let mut lens = [0usize; 5];
        for e in &self.order {
            match e {
                Entry::Rule(i) => {
                    let r = &self.rules[*i];
                    let p = usize::from(r.phase - 1);
                    lens[p] += 1;
                    markers[p].insert(r.id.to_string(), lens[p]);
                }
                Entry::Marker(name) => {
                    for p in 0..5 {
                        lens[p] += 1;
                        markers[p].insert(name.to_string(), lens[p]);
                    }
                }
            }
        }
        // Literal prefilters, target ids and skip targets, while every rule has one owner.
        let mut literals = LiteralInterner::default();
        let mut slots = UnionSlots::default();
        let mut tx = TxLayout::default();
        // Names the engine itself reads and writes; the capture groups first, so that
        // `TX:n` is slot `n` (the transaction relies on it).
        for n in crate::transaction::CAPTURE_NAMES {
            tx.intern(n);
        }
        for n in [
            "msc_pcre_limits_exceeded",
            "blocking_paranoia_level",
            "detection_paranoia_level",
            "inbound_anomaly_score_threshold",
            "outbound_anomaly_score_threshold",
            "blocking_inbound_anomaly_score",
            "anomaly_score",
        ] {
            tx.intern(n);
        }
        let mut links = 0u32;
        for i in self.live_rule_indices() {
            if let Some(r) = Arc::get_mut(&mut self.rules[i]) {
                let p = usize::from(r.phase - 1);
                r.skip_after_index = r
                    .actions
                    .skip_after
                    .as_ref()
                    .and_then(|n| markers[p].get(n).copied());
                let mut link = Some(r);
                while let Some(l) = link {
                    prepare_link(l, &mut literals, &mut slots);
                    links += 1;
                    l.link_no = links;
                    intern_tx(l, &mut tx);
                    link = l.chained.as_deref_mut();
                }
            }
        }
        // With every name interned, each regex-keyed TX target learns which slots it selects.
        for i in self.live_rule_indices() {
            if let Some(r) = Arc::get_mut(&mut self.rules[i]) {
                let mut link = Some(r);
                while let Some(l) = link {
                    for t in &mut l.targets {
                        if t.var == Var::Tx && !t.exclude && matches!(t.key, Key::Regex(_)) {
                            t.tx_slots = Some(tx.selected_slots(|n| t.key.selects(n.as_bytes())));
                        }
                    }
                    link = l.chained.as_deref_mut();
                }
            }
        }
        let mut phases: [Vec<Item>; 5] = Default::default();
        for e in &self.order {
            match e {
                Entry::Rule(i) => {
                    let r = &self.rules[*i];
                    phases[usize::from(r.phase - 1)].push(Item::Rule(r.clone()));
                }
                Entry::Marker(name) => {
                    for phase in &mut phases {
                        phase.push(Item::Marker(name.clone()));
                    }
                }
            }
        }
        let hot = phases
            .each_ref()
            .map(|items| items.iter().map(Hot::of).collect());
        Ok(RuleSet {
            phases,
            hot,
            markers,
            trie: self.trie,
            settings: self.settings,
            literals: literals
                .build()
                .map_err(|e| LoadError::invalid("<prefilter>", 0, e))?,
            tx_layout: Arc::new(tx),
            union_slots: (slots.targets.len() as u32, slots.sets.len() as u32),
            prefilter_enabled: true,
            tx_shortcut: true,
            chain_memo: true,
            op_memo: true,
            links,
            results_owner: crate::memo::new_owner(),
        })
    }
}

/// Give every literal TX name of a rule link a slot.
fn intern_tx(l: &mut Rule, tx: &mut TxLayout) {
    for t in &mut l.targets {
        if t.var == Var::Tx
            && let Key::Name(n) = &t.key
        {
            t.tx_slot = Some(tx.intern(n));
        }
    }
    for e in &mut l.actions.effects {
        if let Effect::SetVar(sv) = e
            && sv.collection == "TX"
            && let Some(k) = &sv.key_literal
        {
            sv.slot = Some(tx.intern(k));
        }
    }
}

/// Where a transaction keeps the literal prefilter's unions: a dense index, assigned at load,
/// for every (target, transformation chain, multiMatch) and every (set of targets, chain,
/// multiMatch) some link reads, so that finding a union computed earlier in the transaction
/// is an index, not a hash lookup.
#[derive(Default)]
pub(crate) struct UnionSlots {
    /// Target (as written) -> id.
    ids: HashMap<String, u32>,
    /// (target id, chain, multiMatch) -> slot.
    targets: HashMap<(u32, u16, bool), u32>,
    /// (sorted target ids, chain, multiMatch) -> slot.
    sets: HashMap<(Vec<u32>, u16, bool), u32>,
}

impl UnionSlots {
    fn target(&mut self, id: u32, chain: u16, all_steps: bool) -> u32 {
        let next = self.targets.len() as u32;
        *self.targets.entry((id, chain, all_steps)).or_insert(next)
    }
}

/// Compile a rule link's literal prefilter and give its targets their union slots.
fn prepare_link(l: &mut Rule, literals: &mut LiteralInterner, slots: &mut UnionSlots) {
    l.prefilter = if l.unconditional {
        None
    } else {
        crate::prefilter::required(&l.op).map(|set| literals.required(&set))
    };
    let mm = l.actions.multi_match;
    let ids: Vec<u32> = l
        .targets
        .iter()
        .map(|t| {
            let next = slots.ids.len() as u32;
            *slots.ids.entry(t.display()).or_insert(next)
        })
        .collect();
    l.target_slots = ids
        .iter()
        .map(|&id| (slots.target(id, l.tchain, mm), slots.target(id, 0, false)))
        .collect();
    let mut set = ids;
    set.sort_unstable();
    set.dedup();
    let next = slots.sets.len() as u32;
    l.set_slot = *slots.sets.entry((set, l.tchain, mm)).or_insert(next);
    l.pure = !l.unconditional
        && l.op.memoisable()
        && l.op.template().is_none()
        && !l.targets.is_empty()
        && l.target_slots.len() == l.targets.len()
        && l.targets
            .iter()
            .all(|t| !t.count && t.var.is_scanned() && t.var.is_stable());
    l.prefilter_rule = l.prefilter.is_some()
        && !l.actions.multi_match
        && !l.targets.is_empty()
        && l.targets.iter().all(|t| !t.count && t.var.is_scanned());
}

enum DirError {
    Msg(String),
    Load(LoadError),
}

/// Expand an `Include` pattern: `*` and `?` in the last path component only.
fn glob(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let name = full
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(if full.exists() {
            vec![full]
        } else {
            Vec::new()
        });
    }
    let parent = full.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(parent)
        .map_err(|e| format!("Include {pattern}: cannot list {} ({e})", parent.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| wildcard(name.as_bytes(), n.to_string_lossy().as_bytes()))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, LoadError> {
        let mut l = Loader::new();
        l.add_text(text, "t.conf", Path::new("."))?;
        l.finish()
    }

    #[test]
    fn chains_markers_and_defaults() {
        let rs = load(
            "SecDefaultAction \"phase:1,log,auditlog,pass\"\n\
             SecRule ARGS \"@rx a\" \"id:1,phase:1,block,chain\"\n\
             SecRule ARGS \"@rx b\" \"t:lowercase\"\n\
             SecMarker END\n\
             SecAction \"id:2,phase:2,nolog,pass\"\n",
        )
        .expect("loads");
        assert_eq!(rs.rule_count(), 2);
        let r = rs.rules().next().expect("rule");
        assert_eq!(r.id, 1);
        assert_eq!(r.disruptive, Disruptive::Pass);
        assert!(r.log);
        assert!(r.chained.is_some());
        assert_eq!(rs.skip_target(1, "END"), Some(2));
        assert_eq!(rs.skip_target(2, "END"), Some(1));
    }

    #[test]
    fn errors_name_the_line() {
        let e = load("SecRule ARGS \"@rx a\" \"phase:1\"").expect_err("no id");
        assert!(e.to_string().contains("t.conf:1"), "{e}");
        let e = load("\n\nSecFoo bar").expect_err("unknown");
        assert!(e.to_string().contains("t.conf:3"), "{e}");
        let e = load("SecRule ARGS \"@rx (\" \"id:1\"").expect_err("bad regex");
        assert!(e.to_string().contains("regular expression"), "{e}");
        let e = load("SecRule ARGS \"@rx a\" \"id:1,chain\"").expect_err("open chain");
        assert!(e.to_string().contains("chain"), "{e}");
        let e = load("SecRule NOPE \"@rx a\" \"id:1\"").expect_err("unknown var");
        assert!(e.to_string().contains("NOPE"), "{e}");
    }

    #[test]
    fn remove_and_update() {
        let rs = load(
            "SecRule ARGS \"@rx a\" \"id:1,tag:x\"\nSecRule ARGS \"@rx a\" \"id:2\"\nSecRule ARGS \"@rx a\" \"id:3\"\n\
             SecRuleRemoveById 1\nSecRuleUpdateTargetById 2 \"!ARGS:foo\"\n",
        )
        .expect("loads");
        let ids: Vec<u32> = rs.rules().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(rs.rules().next().expect("rule").exclusions.len(), 1);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"REQUEST-901.conf"));
        assert!(!wildcard(b"*.conf", b"x.conf.example"));
    }
}
