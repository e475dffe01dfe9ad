//! The `[waf]` section. Its keys are documented in docs/config.md.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWaf {}

/// The `[waf]` section, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WafConfig {}

pub(crate) fn validate(_ctx: &mut Ctx, _raw: &RawWaf) -> WafConfig {
    WafConfig {}
}
