//! `[timeouts]`: how long a handshake, a connect and an idle relay may take. Each is a positive
//! duration; zero would close every connection at once, so it is refused.

use super::super::raw::RawTimeouts;
use super::{d, ConfigError, Ctx, Timeouts};

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawTimeouts) -> Result<Timeouts, ConfigError> {
    let timeouts = Timeouts {
        handshake: ctx.duration(&raw.handshake, "handshake", d::HANDSHAKE_TIMEOUT)?,
        connect: ctx.duration(&raw.connect, "connect", d::CONNECT_TIMEOUT)?,
        idle: ctx.duration(&raw.idle, "idle", d::IDLE_TIMEOUT)?,
    };
    for (v, name, t) in [(&raw.handshake, "handshake", timeouts.handshake), (&raw.connect, "connect", timeouts.connect), (&raw.idle, "idle", timeouts.idle)] {
        if t.is_zero() {
            return Err(ctx.at(v.as_ref().unwrap(), format!("timeout `{name}` is zero"), "give a positive duration such as \"10s\""));
        }
    }
    Ok(timeouts)
}
