//! The admin API: one HTTP listener per process for status, metrics and control.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::path::KeyPath;
use crate::value::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    listen: Option<String>,
    token: Option<Secret>,
    token_env: Option<String>,
}

/// The admin API settings, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    /// Where the admin API listens. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// The bearer token that protects writes; `None` means writes are refused.
    pub token: Option<Secret>,
}

/// The default admin address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

pub(crate) fn validate(ctx: &mut Ctx, raw: Option<&RawAdmin>) -> Admin {
    let base = KeyPath::root().key("admin");
    let default = RawAdmin::default();
    let raw = raw.unwrap_or(&default);
    let listen_s = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = ctx
        .parse(
            &base.key("listen"),
            listen_s,
            "socket address",
            "\"127.0.0.1:9090\"",
            listen_s.parse::<SocketAddr>(),
        )
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090)));
    let token = match (&raw.token, &raw.token_env) {
        (Some(_), Some(_)) => {
            ctx.error(
                &base.key("token_env"),
                "both `token` and `token_env` are set",
                Some("keep one: `token_env` (the name of an environment variable) is the safer choice".into()),
            );
            None
        }
        (Some(t), None) => {
            if t.expose().len() < 8 {
                ctx.error(
                    &base.key("token"),
                    "the admin token is shorter than 8 characters",
                    Some("use a long random string, e.g. from `openssl rand -hex 24`".into()),
                );
            }
            Some(t.clone())
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                ctx.error(
                    &base.key("token_env"),
                    format!("environment variable {var:?} is not set or empty"),
                    Some(format!(
                        "export {var}=<token> before starting, or remove `token_env`"
                    )),
                );
                None
            }
        },
        (None, None) => None,
    };
    Admin { listen, token }
}
