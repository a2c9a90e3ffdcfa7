//! Renewing certificates while a server runs, so that one running for a year needs no
//! restart. Every [`RENEW_CHECK`], [`renew_until`] looks at:
//!
//! - the serving certificate: issued again for the same hosts, stored, and presented from the
//!   next handshake on (every [`ClusterPki::server_config`] asks for the current one);
//! - the admin certificate: issued again, stored, and written into every admin kubeconfig
//!   kept with [`ClusterPki::keep_admin_kubeconfig`];
//! - the in-memory client certificates of [`ClusterPki::live_client_cert`] (the one the API
//!   server presents to node agents): issued again and presented from the next handshake on.
//!
//! Each is renewed once [`due`]: [`RENEW_BEFORE`] before its end, or after two thirds of its
//! lifetime if that is later (a certificate living less than 90 days). Stored ones are written
//! as a start writes them: key first, each file atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use x509_parser::certificate::X509Certificate;

use super::issue::{self, Credential, RENEW_BEFORE};
use super::{
    ADMIN_CERT, ADMIN_COMMON_NAME, ADMIN_GROUP, ADMIN_KEY, ClusterPki, Error, Result, SERVING_CERT,
    SERVING_COMMON_NAME, SERVING_KEY,
};
use crate::certificates::identity::{LiveIdentity, TlsIdentity, Validity};
use crate::kubeconfig::{ClientCertificate, Kubeconfig};

/// How often a running server looks at the ends of its certificates.
pub const RENEW_CHECK: Duration = Duration::from_secs(60 * 60);

/// When a certificate valid for `validity` is renewed: [`RENEW_BEFORE`] before its end, or
/// after two thirds of its lifetime if that is later, so that a short-lived certificate is
/// not renewed at every check.
pub(crate) fn renew_at(validity: Validity) -> SystemTime {
    let before = RENEW_BEFORE.min(validity.lifetime() / 3);
    validity.not_after.checked_sub(before).unwrap_or(validity.not_before)
}

/// Whether a certificate valid for `validity` is to be renewed at `now`.
pub(crate) fn due(validity: Validity, now: SystemTime) -> bool {
    now >= renew_at(validity)
}

/// The validity of `x509` (times before 1970 read as 1970).
fn x509_validity(x509: &X509Certificate<'_>) -> Validity {
    let at = |seconds: i64| {
        UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(seconds).unwrap_or(0))).unwrap_or(UNIX_EPOCH)
    };
    Validity {
        not_before: at(x509.validity().not_before.timestamp()),
        not_after: at(x509.validity().not_after.timestamp()),
    }
}

/// An admin kubeconfig rewritten when the admin certificate is renewed.
pub(crate) struct KeptKubeconfig {
    path: PathBuf,
    cluster_name: String,
    server_url: String,
    /// The admin credential the file holds; `None` after a failed write.
    written: Option<Arc<Credential>>,
}

/// An in-memory client certificate renewed while the PKI is used.
pub(crate) struct LiveClient {
    common_name: String,
    groups: Vec<String>,
    validity: Duration,
    identity: LiveIdentity,
}

impl ClusterPki {
    /// Issues the serving certificate again if it is due at `now` (for the hosts it names,
    /// from the cluster CA), stores it as a start would (key first, each file atomically),
    /// and presents it from the next handshake of every [`server_config`](Self::server_config).
    /// Returns whether it did.
    pub fn renew_serving_if_due(&self, now: SystemTime) -> Result<bool> {
        let current = self.serving.read().clone();
        let x509 = super::parse_certificate(&self.dir.join(SERVING_CERT), &current.cert_der)?;
        if !due(x509_validity(&x509), now) {
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

    /// Writes an admin kubeconfig ([`Kubeconfig::for_admin`]: cluster `cluster_name` at
    /// `server_url`) to `path`, mode 0600 and atomically, and writes it again whenever
    /// [`renew_admin_if_due`](Self::renew_admin_if_due) renews the admin certificate, for as
    /// long as this PKI is used. Keeping a path again replaces its cluster name and URL.
    pub fn keep_admin_kubeconfig(&self, path: &Path, cluster_name: &str, server_url: &str) -> Result<()> {
        let mut kept = self.admin_kubeconfigs.lock();
        kept.retain(|k| k.path != path);
        let mut file = KeptKubeconfig {
            path: path.to_path_buf(),
            cluster_name: cluster_name.to_string(),
            server_url: server_url.to_string(),
            written: None,
        };
        self.write_admin_kubeconfig(&mut file)?;
        kept.push(file);
        Ok(())
    }

    /// Issues the admin certificate again if it is due at `now`, stores it as a start would
    /// (key first, each file atomically), and rewrites every kubeconfig kept with
    /// [`keep_admin_kubeconfig`](Self::keep_admin_kubeconfig) that does not hold the current
    /// one: one that failed to be written before is tried again, due or not. Returns whether
    /// the certificate was renewed.
    pub fn renew_admin_if_due(&self, now: SystemTime) -> Result<bool> {
        // Held while the credential is replaced: kubeconfigs written under it hold one issuance.
        let mut kept = self.admin_kubeconfigs.lock();
        let current = self.admin.read().clone();
        let x509 = super::parse_certificate(&self.dir.join(ADMIN_CERT), &current.cert_der)?;
        let renewed = due(x509_validity(&x509), now);
        if renewed {
            let credential =
                issue::issue_client(&self.ca, ADMIN_COMMON_NAME, &[ADMIN_GROUP.into()], issue::LEAF_VALIDITY)
                    .map_err(|source| Error::Generate { what: "the admin certificate".into(), source })?;
            super::store_leaf(&self.dir, ADMIN_CERT, ADMIN_KEY, &credential)?;
            *self.admin.write() = Arc::new(credential);
            info!(dir = %self.dir.display(), "renewed admin certificate");
        }
        let mut failed = None;
        for file in kept.iter_mut() {
            if let Err(e) = self.write_admin_kubeconfig(file) {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(renewed), Err)
    }

    /// Writes `file` unless it holds the current admin credential already. Called with
    /// `admin_kubeconfigs` locked, so the credential cannot change meanwhile.
    fn write_admin_kubeconfig(&self, file: &mut KeptKubeconfig) -> Result<()> {
        let admin = self.admin.read().clone();
        if file.written.as_ref().is_some_and(|written| Arc::ptr_eq(written, &admin)) {
            return Ok(());
        }
        file.written = None;
        Kubeconfig::for_admin(&file.cluster_name, &file.server_url, self)
            .write(&file.path)
            .map_err(Error::AdminKubeconfig)?;
        file.written = Some(admin);
        info!(path = %file.path.display(), "wrote admin kubeconfig");
        Ok(())
    }

    /// Issues a client certificate as [`issue_client_cert`](Self::issue_client_cert) does
    /// (held in memory only) and keeps it renewed for as long as this PKI is used:
    /// [`renew_clients_if_due`](Self::renew_clients_if_due) replaces it with a fresh one
    /// (new key) when due. Every clone of the returned identity, in a rustls client
    /// configuration say, presents the current certificate at each new handshake.
    pub fn live_client_cert(
        &self,
        common_name: &str,
        groups: &[String],
        validity: Duration,
    ) -> Result<LiveIdentity> {
        let identity = LiveIdentity::new(self.client_identity(common_name, groups, validity)?);
        self.live_clients.lock().push(LiveClient {
            common_name: common_name.to_string(),
            groups: groups.to_vec(),
            validity,
            identity: identity.clone(),
        });
        Ok(identity)
    }

    /// Replaces every certificate of [`live_client_cert`](Self::live_client_cert) that is due
    /// at `now` with a fresh one of the same user, groups and validity. Returns how many it
    /// replaced; after a failure the others are still tried, and the first error returned.
    pub fn renew_clients_if_due(&self, now: SystemTime) -> Result<usize> {
        let clients = self.live_clients.lock();
        let (mut renewed, mut failed) = (0, None);
        for client in clients.iter() {
            if !due(client.identity.current().validity(), now) {
                continue;
            }
            match self.client_identity(&client.common_name, &client.groups, client.validity) {
                Ok(identity) => {
                    client.identity.replace(identity);
                    renewed += 1;
                    info!(user = %client.common_name, "renewed in-memory client certificate");
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(renewed), Err)
    }

    fn client_identity(
        &self,
        common_name: &str,
        groups: &[String],
        validity: Duration,
    ) -> Result<TlsIdentity> {
        let (cert_pem, key_pem) = self.issue_client_cert(common_name, groups, validity)?;
        let pem = ClientCertificate { cert_pem: cert_pem.into_bytes(), key_pem: key_pem.into_bytes() };
        TlsIdentity::from_pem(&pem)
            .map_err(|source| Error::ClientIdentity { common_name: common_name.to_string(), source })
    }
}

/// Checks the serving, admin and in-memory client certificates every [`RENEW_CHECK`] (and at
/// once) until `stop` is cancelled, renewing those that are due; a failure is logged and
/// tried again at the next check.
pub async fn renew_until(pki: Arc<ClusterPki>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RENEW_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = SystemTime::now();
        if let Err(e) = pki.renew_serving_if_due(now) {
            let error = &e as &dyn std::error::Error;
            warn!(error, "renewing the serving certificate failed; trying again in an hour");
        }
        if let Err(e) = pki.renew_admin_if_due(now) {
            let error = &e as &dyn std::error::Error;
            warn!(error, "renewing the admin certificate failed; trying again in an hour");
        }
        if let Err(e) = pki.renew_clients_if_due(now) {
            let error = &e as &dyn std::error::Error;
            warn!(error, "renewing an in-memory client certificate failed; trying again in an hour");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn validity(from: SystemTime, lifetime: Duration) -> Validity {
        Validity { not_before: from, not_after: from + lifetime }
    }

    #[test]
    fn due_thirty_days_before_the_end_or_after_two_thirds_of_a_short_life() {
        let start = UNIX_EPOCH + 1000 * DAY;
        let year = validity(start, 365 * DAY);
        assert_eq!(renew_at(year), start + 335 * DAY);
        assert!(!due(year, start));
        assert!(!due(year, start + 334 * DAY));
        assert!(due(year, start + 335 * DAY));
        assert!(due(year, start + 400 * DAY), "an expired certificate is due");

        // 30 days before the end of a 3-day certificate would be before it starts.
        let short = validity(start, 3 * DAY);
        assert_eq!(renew_at(short), start + 2 * DAY);
        assert!(!due(short, start + DAY));
        assert!(due(short, start + 2 * DAY));

        // An end before the start (a broken certificate) counts as no lifetime: due at its end.
        let backwards = Validity { not_before: start, not_after: start - DAY };
        assert_eq!(renew_at(backwards), start - DAY);
    }

    fn read_kubeconfig_cert(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
        let current = Kubeconfig::load(path)?.current()?;
        let identity = current.client_certificate.ok_or("no client certificate")?;
        Ok(String::from_utf8(identity.cert_pem)?)
    }

    #[test]
    fn admin_renewal_stores_the_certificate_and_rewrites_kept_kubeconfigs()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::load_or_create(&dir.path().join("pki"), &[])?;
        let kubeconfig = dir.path().join("kubeconfig");
        pki.keep_admin_kubeconfig(&kubeconfig, "test", "https://127.0.0.1:6443")?;
        let original = pki.admin_cert_pem();
        assert_eq!(read_kubeconfig_cert(&kubeconfig)?, original);

        assert!(!pki.renew_admin_if_due(SystemTime::now())?, "a fresh certificate is not due");
        assert!(pki.renew_admin_if_due(SystemTime::now() + 340 * DAY)?);
        let renewed = pki.admin_credential();
        assert_ne!(renewed.cert_pem, original.as_bytes());
        assert_eq!(std::fs::read(dir.path().join("pki").join(ADMIN_CERT))?, renewed.cert_pem);
        assert_eq!(std::fs::read(dir.path().join("pki").join(ADMIN_KEY))?, renewed.key_pem);
        assert_eq!(read_kubeconfig_cert(&kubeconfig)?.as_bytes(), renewed.cert_pem);
        assert_eq!(std::fs::metadata(&kubeconfig)?.permissions().mode() & 0o777, 0o600);
        let reloaded = ClusterPki::load_or_create(&dir.path().join("pki"), &[])?;
        assert_eq!(reloaded.admin_credential(), renewed, "a restart keeps the renewed certificate");
        Ok(())
    }

    #[test]
    fn a_kubeconfig_that_could_not_be_rewritten_is_tried_again() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::load_or_create(&dir.path().join("pki"), &[])?;
        let kube_dir = dir.path().join("kube");
        let kubeconfig = kube_dir.join("config");
        pki.keep_admin_kubeconfig(&kubeconfig, "test", "https://127.0.0.1:6443")?;

        // Its directory becomes a file: the rewrite after the renewal fails.
        std::fs::remove_dir_all(&kube_dir)?;
        std::fs::write(&kube_dir, b"")?;
        let err = pki.renew_admin_if_due(SystemTime::now() + 340 * DAY).expect_err("the rewrite fails");
        assert!(matches!(err, Error::AdminKubeconfig(_)), "{err:?}");
        let renewed = pki.admin_cert_pem();

        // Once it can be written, the next check writes it, although nothing is due.
        std::fs::remove_file(&kube_dir)?;
        assert!(!pki.renew_admin_if_due(SystemTime::now())?);
        assert_eq!(read_kubeconfig_cert(&kubeconfig)?, renewed);
        Ok(())
    }

    #[test]
    fn live_client_certificates_are_replaced_when_due() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::load_or_create(dir.path(), &[])?;
        let groups = [ADMIN_GROUP.to_string()];
        let yearly = pki.live_client_cert("yearly", &groups, 365 * DAY)?;
        let daily = pki.live_client_cert("daily", &groups, DAY)?;
        let (first_yearly, first_daily) = (yearly.current(), daily.current());

        assert_eq!(pki.renew_clients_if_due(SystemTime::now())?, 0);
        // Past two thirds of a day, only the daily certificate is due.
        assert_eq!(pki.renew_clients_if_due(SystemTime::now() + DAY * 2 / 3 + RENEW_CHECK)?, 1);
        assert_eq!(yearly.current().serial(), first_yearly.serial());
        let second_daily = daily.current();
        assert_ne!(second_daily.serial(), first_daily.serial());
        let lifetime = second_daily.validity().lifetime();
        assert!(lifetime >= DAY && lifetime <= DAY + Duration::from_secs(600), "same validity: {lifetime:?}");
        Ok(())
    }
}
