//! Renewing the API server's serving certificate while it runs: a certificate within
//! [`RENEW_BEFORE`] of its end is issued again from the CA for the same hosts, stored, and
//! presented from the next handshake on (every [`ClusterPki::server_config`] asks for the
//! current one), so a server that runs for a year needs no restart to keep serving.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::issue::{self, RENEW_BEFORE};
use super::{ClusterPki, Error, Result, SERVING_CERT, SERVING_COMMON_NAME, SERVING_KEY};

/// How often a running server looks at its serving certificate's end.
pub const SERVING_RENEW_CHECK: Duration = Duration::from_secs(60 * 60);

impl ClusterPki {
    /// Issues the serving certificate again if it ends within 30 days of `now` (for the
    /// hosts it names, from the cluster CA), stores it as a start would (key first, each file
    /// atomically), and presents it from the next handshake of every
    /// [`server_config`](Self::server_config). Returns whether it did.
    pub fn renew_serving_if_due(&self, now: SystemTime) -> Result<bool> {
        let current = self.serving.read().clone();
        let path = self.dir.join(SERVING_CERT);
        let x509 = super::parse_certificate(&path, &current.cert_der)?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let renew_at = i64::try_from(now.saturating_add(RENEW_BEFORE).as_secs()).unwrap_or(i64::MAX);
        if x509.validity().not_after.timestamp() >= renew_at {
            return Ok(false);
        }
        let hosts = issue::cert_hosts(&x509);
        let renewed = issue::issue_serving(&self.ca, SERVING_COMMON_NAME, &hosts)
            .map_err(|source| Error::Generate { what: "the serving certificate".into(), source })?;
        let identity = super::serving_identity(&renewed, &self.ca)?;
        super::store_leaf(&self.dir, SERVING_CERT, SERVING_KEY, &renewed)?;
        self.serving_live.replace(identity);
        *self.serving.write() = Arc::new(renewed);
        let hosts = hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        info!(dir = %self.dir.display(), hosts, "renewed serving certificate");
        Ok(true)
    }
}

/// Checks the serving certificate every [`SERVING_RENEW_CHECK`] (and at once) until `stop`
/// is cancelled, renewing it when due; a failure is logged and tried again at the next check.
pub async fn renew_serving_until(pki: Arc<ClusterPki>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SERVING_RENEW_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pki.renew_serving_if_due(SystemTime::now()) {
            warn!(error = %e, "renewing the serving certificate failed; trying again in an hour");
        }
    }
}
