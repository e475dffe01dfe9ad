//! The `[registry]` section. Its keys are documented in docs/config.md.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {}

/// The `[registry]` section, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryConfig {}

pub(crate) fn validate(_ctx: &mut Ctx, _raw: &RawRegistry) -> RegistryConfig {
    RegistryConfig {}
}
