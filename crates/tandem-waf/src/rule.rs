//! Compiled rules and their actions.

use std::sync::Arc;

use crate::operator::Operator;
use crate::seclang::{RawVar, parse_variables};
use crate::template::Template;
use crate::transform::Transform;
use crate::variable::Target;

/// The rule engine's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// Rules do not run.
    Off,
    /// Rules run and log; disruptive actions are not carried out.
    DetectionOnly,
    /// Rules run and disruptive actions are carried out.
    On,
}

impl EngineMode {
    /// Parse `On`, `Off`, `DetectionOnly`.
    pub fn parse(s: &str) -> Option<EngineMode> {
        match s.to_ascii_lowercase().as_str() {
            "on" => Some(EngineMode::On),
            "off" => Some(EngineMode::Off),
            "detectiononly" => Some(EngineMode::DetectionOnly),
            _ => None,
        }
    }
}

/// A disruptive action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruptive {
    /// Continue.
    Pass,
    /// Stop and refuse with the rule's status (403 by default).
    Deny,
    /// Close the connection.
    Drop,
    /// Whatever the default action says.
    Block,
    /// Stop evaluating rules.
    Allow(AllowScope),
    /// Redirect to a URL.
    Redirect(Template),
}

/// How far `allow` reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    /// Skip the rest of this transaction's request and response phases.
    All,
    /// Skip the rest of this phase.
    Phase,
    /// Skip the rest of the request phases.
    Request,
}

/// A request body processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyProcessor {
    /// application/x-www-form-urlencoded
    Urlencoded,
    /// multipart/form-data
    Multipart,
    /// JSON
    Json,
    /// XML
    Xml,
}

impl BodyProcessor {
    /// Parse a `ctl:requestBodyProcessor` value.
    pub fn parse(s: &str) -> Option<BodyProcessor> {
        match s.to_ascii_uppercase().as_str() {
            "URLENCODED" => Some(BodyProcessor::Urlencoded),
            "MULTIPART" => Some(BodyProcessor::Multipart),
            "JSON" => Some(BodyProcessor::Json),
            "XML" => Some(BodyProcessor::Xml),
            _ => None,
        }
    }

    /// The `REQBODY_PROCESSOR` value.
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::Urlencoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// A `setvar`.
#[derive(Debug, Clone)]
pub struct SetVar {
    /// Collection, upper case (`TX`, `IP`, ...).
    pub collection: String,
    /// Member name (may contain macros), expanded then lower-cased.
    pub key: Template,
    /// The lower-cased key when it has no macros.
    pub key_literal: Option<String>,
    /// For a literal TX key: its slot in the rule set's TX layout (set at load).
    pub slot: Option<u32>,
    /// What to do.
    pub op: SetOp,
}

/// The operation of a `setvar`.
#[derive(Debug, Clone)]
pub enum SetOp {
    /// `=value`
    Set(Template),
    /// `=+value`
    Add(Template),
    /// `=-value`
    Sub(Template),
    /// `!name`
    Delete,
}

/// A `ctl` action.
#[derive(Debug, Clone)]
pub enum Ctl {
    /// `ctl:ruleEngine`
    RuleEngine(EngineMode),
    /// `ctl:ruleRemoveById`
    RuleRemoveById(Vec<(u32, u32)>),
    /// `ctl:ruleRemoveByTag`
    RuleRemoveByTag(String),
    /// `ctl:ruleRemoveTargetById`
    RuleRemoveTargetById(Vec<(u32, u32)>, Arc<Target>),
    /// `ctl:ruleRemoveTargetByTag`
    RuleRemoveTargetByTag(String, Arc<Target>),
    /// `ctl:requestBodyProcessor`
    RequestBodyProcessor(BodyProcessor),
    /// `ctl:forceRequestBodyVariable`
    ForceRequestBodyVariable(bool),
    /// `ctl:requestBodyAccess`
    RequestBodyAccess(bool),
    /// `ctl:responseBodyAccess`
    ResponseBodyAccess(bool),
    /// `ctl:requestBodyLimit`
    RequestBodyLimit(usize),
    /// Audit-log and debug controls: accepted, no effect.
    Ignored,
}

/// A non-disruptive action with an effect on the transaction, in written order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// `setvar`
    SetVar(SetVar),
    /// `ctl`
    Ctl(Ctl),
    /// `initcol:ip=...`
    InitCol(String, Template),
    /// `expirevar:ip.x=60`
    ExpireVar(String, Template),
}

/// The actions of one rule as written.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    /// `id`
    pub id: Option<u32>,
    /// `phase`
    pub phase: Option<u8>,
    /// `chain`
    pub chain: bool,
    /// The disruptive action.
    pub disruptive: Option<Disruptive>,
    /// `status`
    pub status: Option<u16>,
    /// `t:` in order; `None` is `t:none`.
    pub transforms: Vec<Option<Transform>>,
    /// `multiMatch`
    pub multi_match: bool,
    /// `capture`
    pub capture: bool,
    /// `log` / `nolog`
    pub log: Option<bool>,
    /// `auditlog` / `noauditlog`
    pub auditlog: Option<bool>,
    /// `msg`
    pub msg: Option<Template>,
    /// `logdata`
    pub logdata: Option<Template>,
    /// `tag`s
    pub tags: Vec<String>,
    /// `severity` (0 emergency .. 7 debug)
    pub severity: Option<u8>,
    /// `ver`
    pub ver: Option<String>,
    /// `rev`
    pub rev: Option<String>,
    /// `maturity`
    pub maturity: Option<u8>,
    /// `accuracy`
    pub accuracy: Option<u8>,
    /// `skip`
    pub skip: u32,
    /// `skipAfter`
    pub skip_after: Option<String>,
    /// setvar, ctl, initcol, expirevar in order.
    pub effects: Vec<Effect>,
}

fn parse_id_ranges(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in s.split([' ', ',']).map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a rule id or id range like 942100-942199"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a rule id or id range like 942100-942199"))?;
        out.push((a.min(b), a.max(b)));
    }
    Ok(out)
}

/// Parse rule-id lists and ranges (`1 2 10-20`).
pub fn id_ranges(s: &str) -> Result<Vec<(u32, u32)>, String> {
    parse_id_ranges(s)
}

fn parse_severity(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>()
        && n <= 7
    {
        return Ok(n);
    }
    Ok(match s.to_ascii_uppercase().as_str() {
        "EMERGENCY" => 0,
        "ALERT" => 1,
        "CRITICAL" => 2,
        "ERROR" => 3,
        "WARNING" => 4,
        "NOTICE" => 5,
        "INFO" => 6,
        "DEBUG" => 7,
        _ => {
            return Err(format!(
                "severity {s:?} is not 0-7 or one of EMERGENCY ALERT CRITICAL ERROR WARNING NOTICE INFO DEBUG"
            ));
        }
    })
}

/// The name of a severity level.
pub fn severity_name(s: u8) -> &'static str {
    match s {
        0 => "EMERGENCY",
        1 => "ALERT",
        2 => "CRITICAL",
        3 => "ERROR",
        4 => "WARNING",
        5 => "NOTICE",
        6 => "INFO",
        _ => "DEBUG",
    }
}

fn parse_target_spec(s: &str) -> Result<Arc<Target>, String> {
    let raw: Vec<RawVar> = parse_variables(s)?;
    let first = raw.first().ok_or_else(|| format!("no target in {s:?}"))?;
    Ok(Arc::new(Target::compile(first)?))
}

fn parse_ctl(v: &str) -> Result<Ctl, String> {
    let (name, value) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl:{v} needs a value, like ctl:ruleEngine=Off"))?;
    let on = |s: &str| -> Result<bool, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Ok(true),
            "off" | "false" | "0" => Ok(false),
            _ => Err(format!("ctl:{name} takes On or Off, not {s:?}")),
        }
    };
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(
            EngineMode::parse(value.trim())
                .ok_or_else(|| format!("ctl:ruleEngine takes On, Off or DetectionOnly, not {value:?}"))?,
        ),
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(value)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(value.trim().to_string()),
        "ruleremovetargetbyid" => {
            let (ids, target) = value
                .split_once(';')
                .ok_or_else(|| format!("ctl:ruleRemoveTargetById={value} needs 'ID;TARGET'"))?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(ids)?, parse_target_spec(target)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, target) = value
                .split_once(';')
                .ok_or_else(|| format!("ctl:ruleRemoveTargetByTag={value} needs 'TAG;TARGET'"))?;
            Ctl::RuleRemoveTargetByTag(tag.trim().to_string(), parse_target_spec(target)?)
        }
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(
            BodyProcessor::parse(value.trim())
                .ok_or_else(|| format!("ctl:requestBodyProcessor takes URLENCODED, MULTIPART, JSON or XML, not {value:?}"))?,
        ),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on(value)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on(value)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on(value)?),
        "requestbodylimit" => Ctl::RequestBodyLimit(
            value
                .trim()
                .parse()
                .map_err(|_| format!("ctl:requestBodyLimit takes a byte count, not {value:?}"))?,
        ),
        "auditengine" | "auditlogparts" | "debugloglevel" | "hashengine" | "hashenforcement"
        | "parsexmlintoargs" => Ctl::Ignored,
        other => return Err(format!("unsupported ctl:{other}")),
    })
}

fn parse_setvar(v: &str) -> Result<SetVar, String> {
    let v = v.trim();
    if let Some(rest) = v.strip_prefix('!') {
        let (coll, key) = rest
            .split_once('.')
            .ok_or_else(|| format!("setvar:{v} needs COLLECTION.name"))?;
        return Ok(SetVar {
            collection: coll.trim().to_ascii_uppercase(),
            key_literal: Template::parse(key.trim())
                .as_literal()
                .map(|k| k.to_ascii_lowercase()),
            key: Template::parse(key.trim()),
            slot: None,
            op: SetOp::Delete,
        });
    }
    let (lhs, rhs) = match v.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (v, None),
    };
    let (coll, key) = lhs
        .split_once('.')
        .ok_or_else(|| format!("setvar:{v} needs COLLECTION.name=value, like tx.score=+5"))?;
    let op = match rhs {
        None => SetOp::Set(Template::parse("1")),
        Some(r) => {
            if let Some(n) = r.strip_prefix('+') {
                SetOp::Add(Template::parse(n))
            } else if let Some(n) = r.strip_prefix('-') {
                SetOp::Sub(Template::parse(n))
            } else {
                SetOp::Set(Template::parse(r))
            }
        }
    };
    Ok(SetVar {
        collection: coll.trim().to_ascii_uppercase(),
        key_literal: Template::parse(key.trim())
            .as_literal()
            .map(|k| k.to_ascii_lowercase()),
        key: Template::parse(key.trim()),
        slot: None,
        op,
    })
}

impl Actions {
    /// Compile a parsed action list.
    pub fn compile(list: &[(String, Option<String>)]) -> Result<Actions, String> {
        let mut a = Actions::default();
        for (name, value) in list {
            let val = || {
                value
                    .as_deref()
                    .ok_or_else(|| format!("action {name} needs a value ({name}:...)"))
            };
            match name.as_str() {
                "id" => {
                    a.id = Some(val()?.trim().parse().map_err(|_| {
                        format!(
                            "id:{} is not a number; rule ids are 1..=4294967295",
                            val().unwrap_or("")
                        )
                    })?)
                }
                "phase" => {
                    a.phase = Some(match val()?.trim().to_ascii_lowercase().as_str() {
                        "1" => 1,
                        "2" | "request" => 2,
                        "3" => 3,
                        "4" | "response" => 4,
                        "5" | "logging" => 5,
                        other => {
                            return Err(format!(
                                "phase:{other} is not 1-5, request, response or logging"
                            ));
                        }
                    })
                }
                "chain" => a.chain = true,
                "pass" => a.disruptive = Some(Disruptive::Pass),
                "deny" => a.disruptive = Some(Disruptive::Deny),
                "drop" => a.disruptive = Some(Disruptive::Drop),
                "block" => a.disruptive = Some(Disruptive::Block),
                "allow" => {
                    a.disruptive = Some(Disruptive::Allow(match value.as_deref().map(str::trim) {
                        None | Some("") => AllowScope::All,
                        Some("phase") => AllowScope::Phase,
                        Some("request") => AllowScope::Request,
                        Some(o) => {
                            return Err(format!(
                                "allow:{o} is not allow, allow:phase or allow:request"
                            ));
                        }
                    }))
                }
                "redirect" => a.disruptive = Some(Disruptive::Redirect(Template::parse(val()?))),
                "proxy" => {
                    return Err(
                        "the proxy action is not supported; route with the edge instead".into(),
                    );
                }
                "status" => {
                    a.status = Some(val()?.trim().parse().map_err(|_| {
                        format!("status:{} is not an HTTP status code", val().unwrap_or(""))
                    })?)
                }
                "t" => a.transforms.push(Transform::parse(val()?.trim())?),
                "multimatch" => a.multi_match = true,
                "capture" => a.capture = true,
                "log" => a.log = Some(true),
                "nolog" => {
                    a.log = Some(false);
                    a.auditlog.get_or_insert(false);
                }
                "auditlog" => a.auditlog = Some(true),
                "noauditlog" => a.auditlog = Some(false),
                "msg" => a.msg = Some(Template::parse(val()?)),
                "logdata" => a.logdata = Some(Template::parse(val()?)),
                "tag" => a.tags.push(val()?.to_string()),
                "severity" => a.severity = Some(parse_severity(val()?.trim())?),
                "ver" => a.ver = Some(val()?.to_string()),
                "rev" => a.rev = Some(val()?.to_string()),
                "maturity" => a.maturity = val()?.trim().parse().ok(),
                "accuracy" => a.accuracy = val()?.trim().parse().ok(),
                "skip" => {
                    a.skip = val()?.trim().parse().map_err(|_| {
                        format!("skip:{} is not a count of rules", val().unwrap_or(""))
                    })?
                }
                "skipafter" => a.skip_after = Some(val()?.trim().to_string()),
                "setvar" => a.effects.push(Effect::SetVar(parse_setvar(val()?)?)),
                "ctl" => a.effects.push(Effect::Ctl(parse_ctl(val()?)?)),
                "initcol" => {
                    let v = val()?;
                    let (c, k) = v
                        .split_once('=')
                        .ok_or_else(|| format!("initcol:{v} needs collection=key"))?;
                    a.effects.push(Effect::InitCol(
                        c.trim().to_ascii_uppercase(),
                        Template::parse(k.trim()),
                    ));
                }
                "expirevar" => {
                    let v = val()?;
                    let (k, secs) = v.split_once('=').unwrap_or((v, "0"));
                    a.effects.push(Effect::ExpireVar(
                        k.trim().to_ascii_lowercase(),
                        Template::parse(secs.trim()),
                    ));
                }
                // Accepted for compatibility; Tandem has no persistent session/user
                // collections or audit-log sanitising, and these change nothing here.
                "setsid"
                | "setuid"
                | "setrsc"
                | "sanitisearg"
                | "sanitisematched"
                | "sanitisematchedbytes"
                | "sanitiserequestheader"
                | "sanitiseresponseheader"
                | "append"
                | "prepend"
                | "deprecatevar"
                | "pause"
                | "xmlns"
                | "setenv" => {}
                "exec" => {
                    return Err("the exec action is not supported: Tandem never runs external programs from rules".into());
                }
                other => return Err(format!("unknown action {other:?}")),
            }
        }
        Ok(a)
    }

    /// Whether the list has a real transformation chain reset (`t:none`).
    pub fn resets_transforms(&self) -> bool {
        self.transforms.iter().any(Option::is_none)
    }
}

/// A compiled rule (or a link of a chain).
#[derive(Debug)]
pub struct Rule {
    /// Rule id (the chain starter's id for links).
    pub id: u32,
    /// Phase 1-5.
    pub phase: u8,
    /// Targets, without exclusions.
    pub targets: Vec<Target>,
    /// Exclusions (`!X:y`).
    pub exclusions: Vec<Target>,
    /// The operator.
    pub op: Operator,
    /// Transformation chain node.
    pub tchain: u16,
    /// The actions as written.
    pub actions: Actions,
    /// Whether a match is logged (resolved against the default action).
    pub log: bool,
    /// The disruptive action (resolved: never `Block`).
    pub disruptive: Disruptive,
    /// Status for deny/redirect.
    pub status: u16,
    /// The next link of the chain.
    pub chained: Option<Box<Rule>>,
    /// Where it was defined.
    pub file: Arc<str>,
    /// Line of definition.
    pub line: usize,
    /// Whether this is a `SecAction` (no variables, always matches).
    pub unconditional: bool,
    /// Literals one of which any value the operator matches contains (set at load).
    pub prefilter: Option<crate::prefilter::Required>,
    /// Whether the prefilter can decide for the whole rule before its values are listed:
    /// every target is request data whose literals a transaction scans once (set at load).
    pub prefilter_rule: bool,
    /// Per target, where a transaction keeps its values' prefilter union: for this link's
    /// transformations (and multiMatch), and for the untransformed values (set at load; see
    /// `UnionSlots` in `ruleset.rs`).
    pub target_slots: Vec<(u32, u32)>,
    /// Where a transaction keeps the union of this link's targets for its transformations:
    /// links with the same targets, transformations and multiMatch share it (set at load).
    pub set_slot: u32,
    /// Where `skipAfter` continues in this rule's phase (set at load).
    pub skip_after_index: Option<usize>,
    /// This link's number in its rule set (set at load; the operator memo's key).
    pub link_no: u32,
    /// Whether this link's result on a value (after its transformations) depends on the
    /// value alone and its targets are request data, so that its results are kept per value
    /// (set at load; see [`crate::link_results`]).
    pub pure: bool,
}

impl Rule {
    /// Whether the rule carries a tag.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.actions.tags.iter().any(|t| t == tag)
    }

    /// The rule's message template, if any.
    pub fn msg(&self) -> Option<&Template> {
        self.actions.msg.as_ref()
    }
}
