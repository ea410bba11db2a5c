//! The admission webhook's certificates: a CA of Airlock's own and the serving certificate it issues, kept in
//! one `kubernetes.io/tls` Secret whose `ca-bundle.crt` becomes the `caBundle` of Airlock's webhook
//! configurations.
//!
//! Deciding is pure and separate from generating: [`plan`] looks at what the Secret holds and the clock and
//! returns a [`Plan`]; [`execute`] carries it out and returns the Secret's new contents; the controller only
//! reads and applies the Secret and patches `caBundle`.
//!
//! # Rotation without failed admissions
//!
//! Two parties switch at their own moment: the API server, which verifies the webhook against the
//! `caBundle` of the webhook configurations, and the webhook pods, which present whatever serving
//! certificate their mounted Secret holds (the kubelet refreshes mounted Secrets after up to a minute or so;
//! the webhook then reloads within seconds). A CA rotation therefore never replaces the CA in one step:
//!
//! 1. [`Plan::RotateCa`]: a new CA issues a new serving certificate, and the bundle becomes *new CA + old
//!    CA*. While pods switch one by one from the old leaf to the new one, the API server trusts both,
//!    because it trusts both CAs. The controller patches `caBundle` from the new contents before (or right
//!    with) writing the Secret: the API server sees the patch long before any pod sees the new leaf.
//! 2. [`Plan::Keep`] while the overlap lasts ([`CertConfig::ca_overlap`]: long enough for every pod to have
//!    reloaded). The rotation time is recorded in the [`CA_ROTATED_AT_ANNOTATION`] annotation.
//! 3. [`Plan::DropOldCa`]: the bundle shrinks to the new CA alone, which every pod's leaf now chains to.
//!
//! Renewing only the serving certificate ([`Plan::RenewServing`]) keeps the CA, so the bundle does not
//! change and nothing has to overlap.
//!
//! # Rotation on request
//!
//! An admin can ask for a CA rotation now (a leaked key, a drill) by giving the Secret's
//! [`ROTATE_CA_ANNOTATION`] a new value, e.g.
//! `kubectl annotate secret airlock-webhook-tls airlock.dev/rotate-ca="$(date -u +%FT%TZ)" --overwrite`.
//! The rotation runs the same overlap as a scheduled one; the value it answered is recorded in
//! [`ROTATE_CA_HANDLED_ANNOTATION`], so each new value rotates once. A request made during an overlap waits
//! for the overlap to end: a third CA in flight could drop one that a webhook pod still serves from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::error::{Error, Result};

/// Secret key holding the serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key holding the serving certificate's private key (PKCS#8 PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret key holding the current CA certificate (PEM).
pub const CA_CRT: &str = "ca.crt";
/// Secret key holding the current CA's private key (PKCS#8 PEM).
pub const CA_KEY: &str = "ca.key";
/// Secret key holding the PEM bundle for `caBundle`: the current CA and, during an overlap, the previous one.
pub const CA_BUNDLE: &str = "ca-bundle.crt";
/// Secret annotation recording when the CA was last rotated (RFC 3339), which starts the overlap.
pub const CA_ROTATED_AT_ANNOTATION: &str = "airlock.dev/ca-rotated-at";
/// Secret annotation an admin sets (to any new value) to ask for a CA rotation now.
pub const ROTATE_CA_ANNOTATION: &str = "airlock.dev/rotate-ca";
/// Secret annotation recording the last [`ROTATE_CA_ANNOTATION`] value a rotation answered.
pub const ROTATE_CA_HANDLED_ANNOTATION: &str = "airlock.dev/rotate-ca-handled";

/// Certificates start this long before they are issued, so an API server whose clock runs a little behind
/// the operator's does not reject a certificate as not yet valid.
const BACKDATE: Duration = Duration::minutes(5);
const CA_COMMON_NAME: &str = "airlock-webhook-ca";
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// What the certificates must look like and how long they live.
#[derive(Debug, Clone, PartialEq)]
pub struct CertConfig {
    /// Name of the webhook's Service.
    pub service: String,
    /// Namespace of the webhook's Service (Airlock's namespace).
    pub namespace: String,
    /// DNS names the serving certificate covers beyond the Service's (`localhost` in the local environment).
    pub extra_dns: Vec<String>,
    /// IP addresses the serving certificate covers (`127.0.0.1` in the local environment).
    pub extra_ips: Vec<IpAddr>,
    /// Lifetime of a CA.
    pub ca_validity: Duration,
    /// Lifetime of a serving certificate (never beyond its CA's).
    pub serving_validity: Duration,
    /// A certificate is renewed when this fraction of its lifetime remains (1/3: at two thirds of its
    /// lifetime, as cert-manager does).
    pub renew_before_fraction: f64,
    /// How long the previous CA stays in the bundle after a rotation: long enough for the API server to see
    /// the new bundle and for every webhook pod to reload the new serving certificate.
    pub ca_overlap: Duration,
}

impl CertConfig {
    /// Default lifetime of a CA.
    pub const DEFAULT_CA_VALIDITY: Duration = Duration::days(365);
    /// Default lifetime of a serving certificate.
    pub const DEFAULT_SERVING_VALIDITY: Duration = Duration::days(90);
    /// Default fraction of the lifetime left when a certificate is renewed.
    pub const DEFAULT_RENEW_BEFORE_FRACTION: f64 = 1.0 / 3.0;
    /// Default overlap of the old and new CA: far beyond the webhook's certificate reload interval (5 s).
    pub const DEFAULT_CA_OVERLAP: Duration = Duration::minutes(10);

    /// A configuration for the webhook Service `service` in `namespace`, with the default lifetimes.
    pub fn new(service: impl Into<String>, namespace: impl Into<String>) -> Self {
        CertConfig {
            service: service.into(),
            namespace: namespace.into(),
            extra_dns: Vec::new(),
            extra_ips: Vec::new(),
            ca_validity: Self::DEFAULT_CA_VALIDITY,
            serving_validity: Self::DEFAULT_SERVING_VALIDITY,
            renew_before_fraction: Self::DEFAULT_RENEW_BEFORE_FRACTION,
            ca_overlap: Self::DEFAULT_CA_OVERLAP,
        }
    }

    /// The DNS names the serving certificate must cover: the Service's names as clients spell them, then the
    /// extras.
    pub fn dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        let mut names = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        for extra in &self.extra_dns {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        names
    }

    fn renew_before_fraction(&self) -> f64 {
        let fraction = self.renew_before_fraction;
        if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            Self::DEFAULT_RENEW_BEFORE_FRACTION
        }
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// When the certificate is due for renewal: when `renew_before_fraction` of its lifetime remains.
    pub fn renew_at(&self, renew_before_fraction: f64) -> OffsetDateTime {
        let lifetime = (self.not_after - self.not_before).whole_seconds();
        // Whole seconds and a saturating float-to-int cast: no overflow whatever the certificate says.
        let before = ((lifetime as f64 * renew_before_fraction) as i64).max(0);
        self.not_after.saturating_sub(Duration::seconds(before))
    }

    fn from_x509(cert: &X509Certificate<'_>) -> Self {
        Validity {
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        }
    }
}

/// The certificates found in the Secret, parsed and cross-checked.
#[derive(Debug, Clone)]
pub struct CertMaterial {
    ca_pem: String,
    ca_key_pem: String,
    ca_validity: Validity,
    ca_key_matches: bool,
    ca_is_ca: bool,
    serving_pem: String,
    serving_key_pem: String,
    serving_validity: Validity,
    serving_dns: Vec<String>,
    serving_ips: Vec<IpAddr>,
    serving_key_matches: bool,
    serving_issued_by_ca: bool,
    /// Raw `ca-bundle.crt`, as the webhook configurations should carry it.
    bundle_pem: String,
    bundle_has_current_ca: bool,
    bundle_damaged: bool,
    /// Bundle entries other than the current CA: the previous CA during an overlap.
    previous_cas: Vec<PreviousCa>,
    ca_rotated_at: Option<OffsetDateTime>,
    rotation: RotationRequest,
}

/// The admin's rotation request and the last one answered ([`ROTATE_CA_ANNOTATION`],
/// [`ROTATE_CA_HANDLED_ANNOTATION`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationRequest {
    /// The value of [`ROTATE_CA_ANNOTATION`].
    pub requested: Option<String>,
    /// The value of [`ROTATE_CA_HANDLED_ANNOTATION`].
    pub handled: Option<String>,
}

impl RotationRequest {
    /// Whether a request has not been answered yet.
    pub fn pending(&self) -> bool {
        self.requested.as_ref().is_some_and(|r| !r.is_empty()) && self.requested != self.handled
    }
}

#[derive(Debug, Clone)]
struct PreviousCa {
    pem: String,
    not_after: OffsetDateTime,
}

impl CertMaterial {
    /// Parses the Secret's data (keys [`TLS_CRT`], [`TLS_KEY`], [`CA_CRT`], [`CA_KEY`], [`CA_BUNDLE`]).
    ///
    /// Fails when a certificate or key is missing or unparsable. A key that does not belong to its
    /// certificate, a serving certificate not issued by the CA, or a missing or damaged bundle are not
    /// errors: they are recorded for [`plan`] to repair. The rotation time is unknown here; see
    /// [`Self::from_secret`].
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<CertMaterial> {
        let text = |key: &str| -> Result<String> {
            let bytes = data
                .get(key)
                .ok_or_else(|| Error::Certificate(format!("Secret has no {key}")))?;
            String::from_utf8(bytes.0.clone())
                .map_err(|_| Error::Certificate(format!("{key} is not UTF-8 PEM")))
        };
        let ca_pem = text(CA_CRT)?;
        let ca_key_pem = text(CA_KEY)?;
        let serving_pem = text(TLS_CRT)?;
        let serving_key_pem = text(TLS_KEY)?;
        // A lost bundle is repairable from ca.crt, so it is not a reason to start over.
        let bundle_pem = text(CA_BUNDLE).unwrap_or_default();

        let ca_der = pem_der(&ca_pem, CA_CRT)?;
        let ca = parse_der(&ca_der, CA_CRT)?;
        let serving_der = pem_der(&serving_pem, TLS_CRT)?;
        let serving = parse_der(&serving_der, TLS_CRT)?;
        let ca_key = parse_key(&ca_key_pem, CA_KEY)?;
        let serving_key = parse_key(&serving_key_pem, TLS_KEY)?;

        let (serving_dns, serving_ips) = sans(&serving)?;
        let serving_issued_by_ca =
            serving.issuer() == ca.subject() && serving.verify_signature(Some(ca.public_key())).is_ok();

        // A damaged bundle is repairable too: its readable CAs are kept, the rest is dropped.
        let mut bundle_has_current_ca = false;
        let mut bundle_damaged = false;
        let mut previous_cas = Vec::new();
        for block in pem_blocks(&bundle_pem) {
            let Ok(der) = pem_der(block, CA_BUNDLE) else {
                bundle_damaged = true;
                continue;
            };
            if der == ca_der {
                bundle_has_current_ca = true;
                continue;
            }
            match parse_der(&der, CA_BUNDLE) {
                Ok(cert) => previous_cas.push(PreviousCa {
                    pem: block.to_owned(),
                    not_after: Validity::from_x509(&cert).not_after,
                }),
                Err(_) => bundle_damaged = true,
            }
        }

        Ok(CertMaterial {
            ca_validity: Validity::from_x509(&ca),
            ca_key_matches: ca_key.subject_public_key_info() == ca.public_key().raw,
            ca_is_ca: ca.is_ca(),
            serving_validity: Validity::from_x509(&serving),
            serving_key_matches: serving_key.subject_public_key_info() == serving.public_key().raw,
            serving_issued_by_ca,
            serving_dns,
            serving_ips,
            bundle_has_current_ca,
            bundle_damaged,
            previous_cas,
            ca_rotated_at: None,
            rotation: RotationRequest::default(),
            ca_pem,
            ca_key_pem,
            serving_pem,
            serving_key_pem,
            bundle_pem,
        })
    }

    /// Parses the Secret's data and reads the rotation time from its [`CA_ROTATED_AT_ANNOTATION`]
    /// annotation, and a rotation request from [`ROTATE_CA_ANNOTATION`] and [`ROTATE_CA_HANDLED_ANNOTATION`].
    /// An absent or unreadable rotation time is unknown, and [`plan`] then falls back to the current CA's
    /// start of validity, which a rotation sets.
    pub fn from_secret(secret: &Secret) -> Result<CertMaterial> {
        let empty = BTreeMap::new();
        let material = Self::from_secret_data(secret.data.as_ref().unwrap_or(&empty))?;
        let annotation = |key: &str| {
            secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(key))
        };
        let rotated_at = annotation(CA_ROTATED_AT_ANNOTATION)
            .and_then(|value| OffsetDateTime::parse(value, &Rfc3339).ok());
        let rotation = RotationRequest {
            requested: annotation(ROTATE_CA_ANNOTATION).cloned(),
            handled: annotation(ROTATE_CA_HANDLED_ANNOTATION).cloned(),
        };
        Ok(material
            .with_ca_rotated_at(rotated_at)
            .with_rotation_request(rotation))
    }

    /// The same material with an admin's rotation request.
    pub fn with_rotation_request(mut self, rotation: RotationRequest) -> Self {
        self.rotation = rotation;
        self
    }

    /// The same material with the time of the last CA rotation set.
    pub fn with_ca_rotated_at(mut self, rotated_at: Option<OffsetDateTime>) -> Self {
        self.ca_rotated_at = rotated_at;
        self
    }

    /// The PEM bundle for the webhook configurations' `caBundle`, as stored.
    pub fn ca_bundle(&self) -> &str {
        &self.bundle_pem
    }

    /// Validity of the current CA.
    pub fn ca_validity(&self) -> Validity {
        self.ca_validity
    }

    /// Validity of the serving certificate.
    pub fn serving_validity(&self) -> Validity {
        self.serving_validity
    }

    /// The serving certificate's DNS names and IP addresses.
    pub fn serving_names(&self) -> (&[String], &[IpAddr]) {
        (&self.serving_dns, &self.serving_ips)
    }

    /// How many CAs besides the current one the bundle still trusts (1 during an overlap).
    pub fn previous_ca_count(&self) -> usize {
        self.previous_cas.len()
    }

    /// When the CA was last rotated, as recorded in the Secret.
    pub fn ca_rotated_at(&self) -> Option<OffsetDateTime> {
        self.ca_rotated_at
    }

    /// Whether the serving certificate names exactly what the configuration asks for: a name dropped from
    /// the configuration is reissued without it, too.
    fn serving_names_match(&self, cfg: &CertConfig) -> bool {
        let dns =
            |names: &[String]| -> BTreeSet<String> { names.iter().map(|n| n.to_ascii_lowercase()).collect() };
        let ips = |ips: &[IpAddr]| -> BTreeSet<IpAddr> { ips.iter().copied().collect() };
        dns(&cfg.dns_names()) == dns(&self.serving_dns) && ips(&cfg.extra_ips) == ips(&self.serving_ips)
    }

    /// When the previous CAs may leave the bundle: once the overlap has passed or they have all expired.
    fn drop_old_ca_at(&self, cfg: &CertConfig) -> Option<OffsetDateTime> {
        let latest_expiry = self.previous_cas.iter().map(|ca| ca.not_after).max()?;
        // Without the annotation, the current CA's start is the rotation time (less the backdating).
        let rotated_at = self
            .ca_rotated_at
            .unwrap_or_else(|| self.ca_validity.not_before.saturating_add(BACKDATE));
        Some(rotated_at.saturating_add(cfg.ca_overlap).min(latest_expiry))
    }

    fn previous_ca_pems(&self) -> Vec<&str> {
        self.previous_cas.iter().map(|ca| ca.pem.as_str()).collect()
    }
}

/// Why a certificate is (re)issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// There is no Secret yet.
    NoMaterial,
    /// The Secret's contents cannot be used (the parse error).
    Unusable(String),
    /// `ca.key` is not the key of `ca.crt`.
    CaKeyMismatch,
    /// `ca.crt` is not a CA certificate.
    NotACa,
    /// The CA has expired: no working chain is left to protect with an overlap.
    CaExpired,
    /// The CA has reached its renewal point.
    CaRenewalDue,
    /// An admin asked for a rotation ([`ROTATE_CA_ANNOTATION`]).
    Requested,
    /// The serving certificate has reached its renewal point.
    ServingRenewalDue,
    /// `tls.key` is not the key of `tls.crt`.
    ServingKeyMismatch,
    /// The serving certificate's names differ from the configured ones.
    ServingNamesChanged,
    /// The serving certificate was not issued by the current CA.
    ServingNotIssuedByCa,
}

impl Reason {
    /// A short, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::NoMaterial => "no_material",
            Reason::Unusable(_) => "unusable",
            Reason::CaKeyMismatch => "ca_key_mismatch",
            Reason::NotACa => "not_a_ca",
            Reason::CaExpired => "ca_expired",
            Reason::CaRenewalDue => "ca_renewal_due",
            Reason::Requested => "requested",
            Reason::ServingRenewalDue => "serving_renewal_due",
            Reason::ServingKeyMismatch => "serving_key_mismatch",
            Reason::ServingNamesChanged => "serving_names_changed",
            Reason::ServingNotIssuedByCa => "serving_not_issued_by_ca",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoMaterial => f.write_str("no certificate Secret"),
            Reason::Unusable(why) => write!(f, "certificate Secret unusable: {why}"),
            Reason::CaKeyMismatch => write!(f, "{CA_KEY} does not match {CA_CRT}"),
            Reason::NotACa => write!(f, "{CA_CRT} is not a CA certificate"),
            Reason::CaExpired => f.write_str("the CA has expired"),
            Reason::CaRenewalDue => f.write_str("the CA is due for renewal"),
            Reason::Requested => write!(f, "a rotation was requested ({ROTATE_CA_ANNOTATION})"),
            Reason::ServingRenewalDue => f.write_str("the serving certificate is due for renewal"),
            Reason::ServingKeyMismatch => write!(f, "{TLS_KEY} does not match {TLS_CRT}"),
            Reason::ServingNamesChanged => {
                f.write_str("the serving certificate's names differ from the configuration")
            }
            Reason::ServingNotIssuedByCa => {
                f.write_str("the serving certificate was not issued by the current CA")
            }
        }
    }
}

/// What to do with the certificate Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do; look again at `next_check`.
    Keep {
        /// The next time a renewal or the end of an overlap is due.
        next_check: OffsetDateTime,
    },
    /// Start over: a new CA and serving certificate, and a bundle of the new CA alone.
    Create {
        /// Why.
        reason: Reason,
    },
    /// A new serving certificate from the current CA; the bundle does not change.
    RenewServing {
        /// Why.
        reason: Reason,
    },
    /// A new CA and a serving certificate issued by it; the bundle trusts the new and the old CA until the
    /// overlap ends.
    RotateCa {
        /// Why.
        reason: Reason,
    },
    /// The overlap is over: the bundle keeps the current CA alone.
    DropOldCa,
    /// The bundle lacks the current CA or holds unreadable blocks: rewrite it, keeping any previous CA whose
    /// overlap still runs.
    RepairBundle,
}

impl Plan {
    /// A short, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Plan::Keep { .. } => "keep",
            Plan::Create { .. } => "create",
            Plan::RenewServing { .. } => "renew_serving",
            Plan::RotateCa { .. } => "rotate_ca",
            Plan::DropOldCa => "drop_old_ca",
            Plan::RepairBundle => "repair_bundle",
        }
    }
}

/// Decides what to do with the certificates in `current` at `now`. Pure.
///
/// The CA comes first (a new CA means a new serving certificate anyway), then the bundle, then the serving
/// certificate, then the end of an overlap.
pub fn plan(current: Option<&CertMaterial>, cfg: &CertConfig, now: OffsetDateTime) -> Plan {
    let Some(m) = current else {
        return Plan::Create {
            reason: Reason::NoMaterial,
        };
    };
    let fraction = cfg.renew_before_fraction();

    // Without a usable CA key nothing can be issued, so there is no overlap to arrange.
    if !m.ca_key_matches {
        return Plan::Create {
            reason: Reason::CaKeyMismatch,
        };
    }
    if !m.ca_is_ca {
        return Plan::Create {
            reason: Reason::NotACa,
        };
    }
    if now >= m.ca_validity.not_after {
        return Plan::Create {
            reason: Reason::CaExpired,
        };
    }
    let ca_renew_at = m.ca_validity.renew_at(fraction);
    if now >= ca_renew_at {
        return Plan::RotateCa {
            reason: Reason::CaRenewalDue,
        };
    }
    if !m.bundle_has_current_ca || m.bundle_damaged {
        return Plan::RepairBundle;
    }
    // A request during an overlap waits for it to end ([`Plan::DropOldCa`] below, then this).
    if m.rotation.pending() && m.previous_cas.is_empty() {
        return Plan::RotateCa {
            reason: Reason::Requested,
        };
    }

    let serving_reason = if !m.serving_issued_by_ca {
        Some(Reason::ServingNotIssuedByCa)
    } else if !m.serving_key_matches {
        Some(Reason::ServingKeyMismatch)
    } else if !m.serving_names_match(cfg) {
        Some(Reason::ServingNamesChanged)
    } else if now >= m.serving_validity.renew_at(fraction) {
        Some(Reason::ServingRenewalDue)
    } else {
        None
    };
    if let Some(reason) = serving_reason {
        return Plan::RenewServing { reason };
    }

    let drop_at = m.drop_old_ca_at(cfg);
    if drop_at.is_some_and(|at| now >= at) {
        return Plan::DropOldCa;
    }

    let next_check = [
        Some(ca_renew_at),
        Some(m.serving_validity.renew_at(fraction)),
        drop_at,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(ca_renew_at);
    Plan::Keep { next_check }
}

/// Reads the Secret (if any) and plans. Unusable contents become [`Plan::Create`] with the parse error as
/// the reason. Returns the parsed material too, for [`execute`].
pub fn plan_secret(
    secret: Option<&Secret>,
    cfg: &CertConfig,
    now: OffsetDateTime,
) -> (Plan, Option<CertMaterial>) {
    match secret.map(CertMaterial::from_secret) {
        None => (plan(None, cfg, now), None),
        Some(Err(error)) => (
            Plan::Create {
                reason: Reason::Unusable(error.to_string()),
            },
            None,
        ),
        Some(Ok(material)) => (plan(Some(&material), cfg, now), Some(material)),
    }
}

/// The Secret's new contents.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretContents {
    /// Secret data (keys [`TLS_CRT`], [`TLS_KEY`], [`CA_CRT`], [`CA_KEY`], [`CA_BUNDLE`]).
    pub data: BTreeMap<String, ByteString>,
    /// Secret annotations Airlock owns ([`CA_ROTATED_AT_ANNOTATION`] during an overlap,
    /// [`ROTATE_CA_HANDLED_ANNOTATION`] once a request was answered).
    pub annotations: BTreeMap<String, String>,
}

impl SecretContents {
    /// The PEM bundle for the webhook configurations' `caBundle`.
    pub fn ca_bundle(&self) -> &[u8] {
        self.data
            .get(CA_BUNDLE)
            .map(|b| b.0.as_slice())
            .unwrap_or_default()
    }
}

/// Carries out `plan` on `current`, generating keys and certificates as needed. Returns `None` for
/// [`Plan::Keep`].
///
/// Fails when the plan needs material that is not there, or when generation fails.
pub fn execute(
    plan: &Plan,
    current: Option<&CertMaterial>,
    cfg: &CertConfig,
    now: OffsetDateTime,
) -> Result<Option<SecretContents>> {
    let need = |what: &str| {
        current.ok_or_else(|| Error::Certificate(format!("cannot {what} without existing certificates")))
    };
    // A new CA answers the pending request; any other write keeps the answer it had.
    let rotation = current.map(|m| &m.rotation);
    let answered = match plan {
        Plan::Create { .. } | Plan::RotateCa { .. } => rotation.and_then(|r| r.requested.as_ref()),
        _ => None,
    }
    .or_else(|| rotation.and_then(|r| r.handled.as_ref()));
    let mut contents = match plan {
        Plan::Keep { .. } => return Ok(None),
        Plan::Create { .. } => {
            let ca = new_ca(cfg, now)?;
            let serving = new_serving(cfg, &ca, now)?;
            contents(&ca, &serving, &[], None)
        }
        Plan::RenewServing { .. } => {
            let m = need("renew the serving certificate")?;
            let ca = existing_ca(m);
            let serving = new_serving(cfg, &ca, now)?;
            contents(&ca, &serving, &m.previous_ca_pems(), m.ca_rotated_at)
        }
        Plan::RotateCa { .. } => {
            let m = need("rotate the CA")?;
            let ca = new_ca(cfg, now)?;
            let serving = new_serving(cfg, &ca, now)?;
            // Only the CA being replaced overlaps; anything older had its overlap already.
            contents(&ca, &serving, &[m.ca_pem.as_str()], Some(now))
        }
        Plan::DropOldCa => {
            let m = need("drop the old CA")?;
            contents(&existing_ca(m), &existing_serving(m), &[], None)
        }
        Plan::RepairBundle => {
            let m = need("repair the CA bundle")?;
            contents(
                &existing_ca(m),
                &existing_serving(m),
                &m.previous_ca_pems(),
                m.ca_rotated_at,
            )
        }
    };
    if let Some(answered) = answered {
        contents
            .annotations
            .insert(ROTATE_CA_HANDLED_ANNOTATION.to_owned(), answered.clone());
    }
    Ok(Some(contents))
}

/// The certificate Secret, labelled as Airlock's.
pub fn secret(
    name: &str,
    namespace: &str,
    data: BTreeMap<String, ByteString>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/part-of".to_owned(), "airlock".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "airlock-operator".to_owned(),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            // Omitted rather than empty, so that server-side apply gives the annotation up after an overlap.
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// A certificate and its key, both PEM.
struct Pair {
    cert_pem: String,
    key_pem: String,
    not_after: OffsetDateTime,
}

fn existing_ca(m: &CertMaterial) -> Pair {
    Pair {
        cert_pem: m.ca_pem.clone(),
        key_pem: m.ca_key_pem.clone(),
        not_after: m.ca_validity.not_after,
    }
}

fn existing_serving(m: &CertMaterial) -> Pair {
    Pair {
        cert_pem: m.serving_pem.clone(),
        key_pem: m.serving_key_pem.clone(),
        not_after: m.serving_validity.not_after,
    }
}

fn contents(
    ca: &Pair,
    serving: &Pair,
    previous_cas: &[&str],
    rotated_at: Option<OffsetDateTime>,
) -> SecretContents {
    let mut bundle = String::new();
    for pem in std::iter::once(ca.cert_pem.as_str()).chain(previous_cas.iter().copied()) {
        bundle.push_str(pem.trim());
        bundle.push('\n');
    }
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let data = BTreeMap::from([
        (TLS_CRT.to_owned(), bytes(&serving.cert_pem)),
        (TLS_KEY.to_owned(), bytes(&serving.key_pem)),
        (CA_CRT.to_owned(), bytes(&ca.cert_pem)),
        (CA_KEY.to_owned(), bytes(&ca.key_pem)),
        (CA_BUNDLE.to_owned(), bytes(&bundle)),
    ]);
    // The rotation time only matters while a previous CA is in the bundle.
    let annotations = rotated_at
        .filter(|_| !previous_cas.is_empty())
        .and_then(|at| at.format(&Rfc3339).ok())
        .map(|at| BTreeMap::from([(CA_ROTATED_AT_ANNOTATION.to_owned(), at)]))
        .unwrap_or_default();
    SecretContents { data, annotations }
}

fn new_ca(cfg: &CertConfig, now: OffsetDateTime) -> Result<Pair> {
    let key = KeyPair::generate().map_err(rcgen_error("generate the CA key"))?;
    let mut params = CertificateParams::default();
    // A distinct subject per CA, so that clients holding both during an overlap never confuse them.
    params.distinguished_name = common_name(&format!("{CA_COMMON_NAME}@{}", now.unix_timestamp()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now.saturating_sub(BACKDATE);
    params.not_after = checked_add(now, cfg.ca_validity)?;
    let cert = params.self_signed(&key).map_err(rcgen_error("sign the CA"))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: params.not_after,
    })
}

fn new_serving(cfg: &CertConfig, ca: &Pair, now: OffsetDateTime) -> Result<Pair> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(rcgen_error("read the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(rcgen_error("read the CA"))?;

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&format!("{}.{}.svc", cfg.service, cfg.namespace));
    for name in cfg.dns_names() {
        let name = name
            .as_str()
            .try_into()
            .map_err(|e| Error::Certificate(format!("invalid DNS name {name:?}: {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(cfg.extra_ips.iter().copied().map(SanType::IpAddress));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now.saturating_sub(BACKDATE);
    // A leaf outliving its CA would only fail verification in its last days.
    params.not_after = checked_add(now, cfg.serving_validity)?.min(ca.not_after);

    let key = KeyPair::generate().map_err(rcgen_error("generate the serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("sign the serving certificate"))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: params.not_after,
    })
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn checked_add(now: OffsetDateTime, validity: Duration) -> Result<OffsetDateTime> {
    now.checked_add(validity)
        .ok_or_else(|| Error::Certificate(format!("validity {validity} is out of range")))
}

fn rcgen_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |error| Error::Certificate(format!("cannot {what}: {error}"))
}

/// The `CERTIFICATE` blocks of a PEM text, each from its BEGIN to its END line.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let Some(len) = rest[start..].find(PEM_END) else {
            // An unterminated block is kept so that decoding it reports the damage.
            blocks.push(&rest[start..]);
            break;
        };
        let end = start + len + PEM_END.len();
        blocks.push(&rest[start..end]);
        rest = &rest[end..];
    }
    blocks
}

/// The DER of the first `CERTIFICATE` block in `pem`.
fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>> {
    let block = pem_blocks(pem)
        .into_iter()
        .next()
        .ok_or_else(|| Error::Certificate(format!("{what} holds no PEM certificate")))?;
    let (_, decoded): (_, Pem) = x509_parser::pem::parse_x509_pem(block.as_bytes())
        .map_err(|e| Error::Certificate(format!("{what} is not valid PEM: {e}")))?;
    Ok(decoded.contents)
}

fn parse_der<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::Certificate(format!("{what} is not a valid X.509 certificate: {e}")))
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|e| Error::Certificate(format!("{what} is not a usable private key: {e}")))
}

fn sans(cert: &X509Certificate<'_>) -> Result<(Vec<String>, Vec<IpAddr>)> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("{TLS_CRT} has an invalid subjectAltName: {e}")))?;
    for name in ext.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    Ok((dns, ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CertConfig {
        CertConfig {
            extra_dns: vec!["localhost".to_owned()],
            extra_ips: vec![IpAddr::from([127, 0, 0, 1])],
            ..CertConfig::new("airlock-webhook", "airlock-system")
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap() // 2026-01-01T00:00:00Z
    }

    fn created(cfg: &CertConfig, now: OffsetDateTime) -> SecretContents {
        let plan = plan(None, cfg, now);
        assert_eq!(
            plan,
            Plan::Create {
                reason: Reason::NoMaterial
            }
        );
        execute(&plan, None, cfg, now).unwrap().unwrap()
    }

    /// What the controller would read back after applying `contents`.
    fn stored(contents: &SecretContents) -> Secret {
        secret(
            "airlock-webhook-tls",
            "airlock-system",
            contents.data.clone(),
            contents.annotations.clone(),
        )
    }

    fn parsed(contents: &SecretContents) -> CertMaterial {
        CertMaterial::from_secret(&stored(contents)).unwrap()
    }

    fn text(contents: &SecretContents, key: &str) -> String {
        String::from_utf8(contents.data[key].0.clone()).unwrap()
    }

    fn der(pem: &str) -> Vec<u8> {
        pem_der(pem, "test").unwrap()
    }

    /// Whether `leaf_pem` carries a valid signature by `ca_pem`'s key and names it as issuer.
    fn issued_by(leaf_pem: &str, ca_pem: &str) -> bool {
        let (leaf_der, ca_der) = (der(leaf_pem), der(ca_pem));
        let (leaf, ca) = (
            parse_der(&leaf_der, "leaf").unwrap(),
            parse_der(&ca_der, "ca").unwrap(),
        );
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    fn step(
        contents: &SecretContents,
        cfg: &CertConfig,
        now: OffsetDateTime,
    ) -> (Plan, Option<SecretContents>) {
        let (plan, current) = plan_secret(Some(&stored(contents)), cfg, now);
        let next = execute(&plan, current.as_ref(), cfg, now).unwrap();
        (plan, next)
    }

    #[test]
    fn created_material_parses_back_with_the_configured_names_and_lifetimes() {
        let cfg = cfg();
        let contents = created(&cfg, t0());
        let m = parsed(&contents);

        let (dns, ips) = m.serving_names();
        assert_eq!(
            dns,
            [
                "airlock-webhook",
                "airlock-webhook.airlock-system",
                "airlock-webhook.airlock-system.svc",
                "airlock-webhook.airlock-system.svc.cluster.local",
                "localhost",
            ]
        );
        assert_eq!(ips, [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(m.ca_validity().not_after, t0() + Duration::days(365));
        assert_eq!(m.serving_validity().not_after, t0() + Duration::days(90));
        assert_eq!(m.serving_validity().not_before, t0() - BACKDATE);
        assert_eq!(m.previous_ca_count(), 0);
        assert_eq!(m.ca_bundle().trim(), text(&contents, CA_CRT).trim());
        assert!(contents.annotations.is_empty());
        assert!(issued_by(&text(&contents, TLS_CRT), &text(&contents, CA_CRT)));
    }

    #[test]
    fn created_certificates_have_the_extensions_clients_require() {
        let contents = created(&cfg(), t0());
        let (ca_der, leaf_der) = (der(&text(&contents, CA_CRT)), der(&text(&contents, TLS_CRT)));
        let (ca, leaf) = (
            parse_der(&ca_der, "ca").unwrap(),
            parse_der(&leaf_der, "leaf").unwrap(),
        );

        assert!(ca.is_ca());
        assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert!(!leaf.is_ca());
        assert!(leaf.extended_key_usage().unwrap().unwrap().value.server_auth);
        assert_eq!(
            ca.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
    }

    #[test]
    fn fresh_material_is_kept_until_the_serving_certificate_is_due() {
        let cfg = cfg();
        let contents = created(&cfg, t0());
        let (plan, next) = step(&contents, &cfg, t0() + Duration::days(1));
        // A lifetime of 90 days and 5 minutes (backdated), renewed with a third of it left.
        let due = t0() + Duration::days(60) - Duration::seconds(100);
        assert_eq!(plan, Plan::Keep { next_check: due });
        assert_eq!(next, None);
    }

    #[test]
    fn serving_certificate_past_its_renewal_point_is_renewed_by_the_same_ca() {
        let cfg = cfg();
        let contents = created(&cfg, t0());
        let now = t0() + Duration::days(61);
        let (plan, next) = step(&contents, &cfg, now);
        assert_eq!(
            plan,
            Plan::RenewServing {
                reason: Reason::ServingRenewalDue
            }
        );

        let next = next.unwrap();
        for key in [CA_CRT, CA_KEY, CA_BUNDLE] {
            assert_eq!(next.data[key], contents.data[key], "{key} must not change");
        }
        assert_ne!(next.data[TLS_CRT], contents.data[TLS_CRT]);
        assert_ne!(next.data[TLS_KEY], contents.data[TLS_KEY]);
        assert!(issued_by(&text(&next, TLS_CRT), &text(&next, CA_CRT)));
        assert_eq!(
            parsed(&next).serving_validity().not_after,
            now + Duration::days(90)
        );
        assert!(matches!(step(&next, &cfg, now).0, Plan::Keep { .. }));
    }

    #[test]
    fn changed_names_renew_the_serving_certificate() {
        let cfg = cfg();
        let contents = created(&cfg, t0());
        let moved = CertConfig {
            namespace: "airlock".to_owned(),
            ..cfg.clone()
        };
        let (plan, next) = step(&contents, &moved, t0() + Duration::hours(1));
        assert_eq!(
            plan,
            Plan::RenewServing {
                reason: Reason::ServingNamesChanged
            }
        );
        let next = parsed(&next.unwrap());
        assert!(
            next.serving_names()
                .0
                .contains(&"airlock-webhook.airlock.svc".to_owned())
        );

        let no_ip = CertConfig {
            extra_ips: Vec::new(),
            ..cfg
        };
        let (plan, _) = step(&contents, &no_ip, t0() + Duration::hours(1));
        assert_eq!(
            plan,
            Plan::RenewServing {
                reason: Reason::ServingNamesChanged
            }
        );
    }

    #[test]
    fn ca_past_its_renewal_point_rotates_with_old_and_new_ca_in_the_bundle() {
        let cfg = cfg();
        let old = created(&cfg, t0());
        let now = t0() + Duration::days(250);
        let (plan, next) = step(&old, &cfg, now);
        assert_eq!(
            plan,
            Plan::RotateCa {
                reason: Reason::CaRenewalDue
            }
        );

        let new = next.unwrap();
        let bundle = text(&new, CA_BUNDLE);
        assert_eq!(bundle.matches(PEM_BEGIN).count(), 2, "{bundle}");
        let blocks = pem_blocks(&bundle);
        assert_eq!(der(blocks[0]), der(&text(&new, CA_CRT)));
        assert_eq!(der(blocks[1]), der(&text(&old, CA_CRT)));
        assert_ne!(new.data[CA_KEY], old.data[CA_KEY]);

        // The API server trusts whichever leaf a pod serves during the switch.
        assert!(issued_by(&text(&new, TLS_CRT), &text(&new, CA_CRT)));
        assert!(!issued_by(&text(&new, TLS_CRT), &text(&old, CA_CRT)));
        assert!(issued_by(&text(&old, TLS_CRT), blocks[1]));

        assert_eq!(
            new.annotations.get(CA_ROTATED_AT_ANNOTATION).map(String::as_str),
            Some("2026-09-08T00:00:00Z")
        );
        let m = parsed(&new);
        assert_eq!(m.ca_rotated_at(), Some(now));
        assert_eq!(m.previous_ca_count(), 1);
    }

    #[test]
    fn old_ca_stays_during_the_overlap_and_leaves_after_it() {
        let cfg = cfg();
        let rotated_at = t0() + Duration::days(250);
        let (_, rotated) = step(&created(&cfg, t0()), &cfg, rotated_at);
        let rotated = rotated.unwrap();

        let (plan, _) = step(&rotated, &cfg, rotated_at + Duration::minutes(1));
        assert_eq!(
            plan,
            Plan::Keep {
                next_check: rotated_at + Duration::minutes(10)
            }
        );

        let after = rotated_at + Duration::minutes(11);
        let (plan, next) = step(&rotated, &cfg, after);
        assert_eq!(plan, Plan::DropOldCa);
        let dropped = next.unwrap();
        assert_eq!(text(&dropped, CA_BUNDLE).matches(PEM_BEGIN).count(), 1);
        assert_eq!(der(&text(&dropped, CA_BUNDLE)), der(&text(&rotated, CA_CRT)));
        for key in [CA_CRT, CA_KEY, TLS_CRT, TLS_KEY] {
            assert_eq!(dropped.data[key], rotated.data[key], "{key} must not change");
        }
        assert!(dropped.annotations.is_empty());
        assert!(matches!(step(&dropped, &cfg, after).0, Plan::Keep { .. }));
    }

    #[test]
    fn overlap_without_the_annotation_is_timed_from_the_new_ca() {
        let cfg = cfg();
        let rotated_at = t0() + Duration::days(250);
        let (_, rotated) = step(&created(&cfg, t0()), &cfg, rotated_at);
        let m = CertMaterial::from_secret_data(&rotated.unwrap().data).unwrap();
        assert_eq!(m.ca_rotated_at(), None);

        assert!(matches!(
            plan(Some(&m), &cfg, rotated_at + Duration::minutes(9)),
            Plan::Keep { .. }
        ));
        assert_eq!(
            plan(Some(&m), &cfg, rotated_at + Duration::minutes(10)),
            Plan::DropOldCa
        );
    }

    #[test]
    fn renewing_the_serving_certificate_during_an_overlap_keeps_the_old_ca() {
        let cfg = cfg();
        let rotated_at = t0() + Duration::days(250);
        let (_, rotated) = step(&created(&cfg, t0()), &cfg, rotated_at);
        let rotated = rotated.unwrap();
        let moved = CertConfig {
            extra_dns: Vec::new(),
            ..cfg
        };

        let (plan, next) = step(&rotated, &moved, rotated_at + Duration::minutes(1));
        assert_eq!(
            plan,
            Plan::RenewServing {
                reason: Reason::ServingNamesChanged
            }
        );
        let next = next.unwrap();
        assert_eq!(next.data[CA_BUNDLE], rotated.data[CA_BUNDLE]);
        assert_eq!(next.annotations, rotated.annotations);
    }

    /// `contents` as stored, with an admin's [`ROTATE_CA_ANNOTATION`] on top: Airlock's server-side apply
    /// leaves another field manager's annotation in place.
    fn with_request(contents: &SecretContents, value: &str) -> SecretContents {
        let mut contents = contents.clone();
        contents
            .annotations
            .insert(ROTATE_CA_ANNOTATION.to_owned(), value.to_owned());
        contents
    }

    #[test]
    fn a_requested_rotation_overlaps_like_a_scheduled_one_and_runs_once_per_request() {
        let cfg = cfg();
        let old = created(&cfg, t0());
        let now = t0() + Duration::days(1);
        let (plan, next) = step(&with_request(&old, "2026-01-02T00:00:00Z"), &cfg, now);
        assert_eq!(
            plan,
            Plan::RotateCa {
                reason: Reason::Requested
            }
        );
        let rotated = next.unwrap();
        assert_ne!(rotated.data[CA_KEY], old.data[CA_KEY]);
        assert_eq!(text(&rotated, CA_BUNDLE).matches(PEM_BEGIN).count(), 2);
        assert_eq!(
            rotated
                .annotations
                .get(ROTATE_CA_HANDLED_ANNOTATION)
                .map(String::as_str),
            Some("2026-01-02T00:00:00Z")
        );
        assert!(rotated.annotations.contains_key(CA_ROTATED_AT_ANNOTATION));

        // The same request is answered: the overlap runs its course and the handled value survives it.
        let rotated = with_request(&rotated, "2026-01-02T00:00:00Z");
        let (plan, _) = step(&rotated, &cfg, now + Duration::minutes(1));
        assert!(matches!(plan, Plan::Keep { .. }), "{plan:?}");
        let (plan, dropped) = step(&rotated, &cfg, now + Duration::minutes(11));
        assert_eq!(plan, Plan::DropOldCa);
        let dropped = with_request(&dropped.unwrap(), "2026-01-02T00:00:00Z");
        assert_eq!(
            dropped
                .annotations
                .get(ROTATE_CA_HANDLED_ANNOTATION)
                .map(String::as_str),
            Some("2026-01-02T00:00:00Z")
        );
        assert!(matches!(
            step(&dropped, &cfg, now + Duration::minutes(12)).0,
            Plan::Keep { .. }
        ));

        // A new value asks again.
        let (plan, _) = step(
            &with_request(&dropped, "again"),
            &cfg,
            now + Duration::minutes(12),
        );
        assert_eq!(
            plan,
            Plan::RotateCa {
                reason: Reason::Requested
            }
        );
    }

    #[test]
    fn a_rotation_requested_during_an_overlap_waits_for_the_old_ca_to_leave() {
        let cfg = cfg();
        let rotated_at = t0() + Duration::days(250);
        let (_, rotated) = step(&created(&cfg, t0()), &cfg, rotated_at);
        let rotated = with_request(&rotated.unwrap(), "now");

        let (plan, _) = step(&rotated, &cfg, rotated_at + Duration::minutes(1));
        assert_eq!(
            plan,
            Plan::Keep {
                next_check: rotated_at + Duration::minutes(10)
            }
        );
        let (plan, dropped) = step(&rotated, &cfg, rotated_at + Duration::minutes(10));
        assert_eq!(plan, Plan::DropOldCa);
        // Dropping the old CA does not answer the request; the rotation follows.
        let dropped = with_request(&dropped.unwrap(), "now");
        assert_eq!(dropped.annotations.get(ROTATE_CA_HANDLED_ANNOTATION), None);
        assert_eq!(
            step(&dropped, &cfg, rotated_at + Duration::minutes(10)).0,
            Plan::RotateCa {
                reason: Reason::Requested
            }
        );
    }

    #[test]
    fn an_empty_request_asks_for_nothing() {
        let cfg = cfg();
        let (plan, _) = step(&with_request(&created(&cfg, t0()), ""), &cfg, t0());
        assert!(matches!(plan, Plan::Keep { .. }), "{plan:?}");
    }

    #[test]
    fn expired_ca_starts_over() {
        let cfg = cfg();
        let (plan, next) = step(&created(&cfg, t0()), &cfg, t0() + Duration::days(400));
        assert_eq!(
            plan,
            Plan::Create {
                reason: Reason::CaExpired
            }
        );
        assert_eq!(text(&next.unwrap(), CA_BUNDLE).matches(PEM_BEGIN).count(), 1);
    }

    #[test]
    fn garbage_data_starts_over() {
        let cfg = cfg();
        let mut contents = created(&cfg, t0());
        contents
            .data
            .insert(TLS_CRT.to_owned(), ByteString(b"not a certificate".to_vec()));
        let (plan, next) = step(&contents, &cfg, t0());
        match &plan {
            Plan::Create {
                reason: Reason::Unusable(why),
            } => assert!(why.contains(TLS_CRT), "{why}"),
            other => panic!("expected Create, got {other:?}"),
        }
        assert!(CertMaterial::from_secret_data(&next.unwrap().data).is_ok());

        let (plan, _) = plan_secret(Some(&Secret::default()), &cfg, t0());
        assert!(matches!(
            plan,
            Plan::Create {
                reason: Reason::Unusable(_)
            }
        ));
    }

    #[test]
    fn ca_key_of_another_ca_starts_over() {
        let cfg = cfg();
        let mut contents = created(&cfg, t0());
        let other = created(&cfg, t0());
        contents
            .data
            .insert(CA_KEY.to_owned(), other.data[CA_KEY].clone());
        assert_eq!(
            step(&contents, &cfg, t0()).0,
            Plan::Create {
                reason: Reason::CaKeyMismatch
            }
        );
    }

    #[test]
    fn serving_key_or_issuer_mismatch_renews_the_serving_certificate() {
        let cfg = cfg();
        let contents = created(&cfg, t0());
        let other = created(&cfg, t0());

        let mut wrong_key = contents.clone();
        wrong_key
            .data
            .insert(TLS_KEY.to_owned(), other.data[TLS_KEY].clone());
        assert_eq!(
            step(&wrong_key, &cfg, t0()).0,
            Plan::RenewServing {
                reason: Reason::ServingKeyMismatch
            }
        );

        let mut foreign = contents.clone();
        foreign
            .data
            .insert(TLS_CRT.to_owned(), other.data[TLS_CRT].clone());
        foreign
            .data
            .insert(TLS_KEY.to_owned(), other.data[TLS_KEY].clone());
        let (plan, next) = step(&foreign, &cfg, t0());
        assert_eq!(
            plan,
            Plan::RenewServing {
                reason: Reason::ServingNotIssuedByCa
            }
        );
        assert!(issued_by(
            &text(&next.unwrap(), TLS_CRT),
            &text(&contents, CA_CRT)
        ));
    }

    #[test]
    fn bundle_without_the_current_ca_is_repaired() {
        let cfg = cfg();
        let mut contents = created(&cfg, t0());
        contents.data.remove(CA_BUNDLE);
        let (plan, next) = step(&contents, &cfg, t0());
        assert_eq!(plan, Plan::RepairBundle);
        let next = next.unwrap();
        assert_eq!(der(&text(&next, CA_BUNDLE)), der(&text(&contents, CA_CRT)));
        assert_eq!(next.data[TLS_CRT], contents.data[TLS_CRT]);
    }

    #[test]
    fn damaged_bundle_is_rewritten_from_the_readable_cas() {
        let cfg = cfg();
        let mut contents = created(&cfg, t0());
        let damaged = format!("{}{PEM_BEGIN}\n!!!\n{PEM_END}\n", text(&contents, CA_BUNDLE));
        contents
            .data
            .insert(CA_BUNDLE.to_owned(), ByteString(damaged.into_bytes()));
        let (plan, next) = step(&contents, &cfg, t0());
        assert_eq!(plan, Plan::RepairBundle);
        let bundle = text(&next.unwrap(), CA_BUNDLE);
        assert_eq!(bundle.matches(PEM_BEGIN).count(), 1);
        assert_eq!(der(&bundle), der(&text(&contents, CA_CRT)));
    }

    #[test]
    fn plans_that_need_material_fail_without_it() {
        let err = execute(&Plan::DropOldCa, None, &cfg(), t0()).unwrap_err();
        assert!(matches!(err, Error::Certificate(_)));
    }

    #[test]
    fn secret_is_a_labelled_tls_secret() {
        let contents = created(&cfg(), t0());
        let s = secret(
            "airlock-webhook-tls",
            "airlock-system",
            contents.data,
            BTreeMap::new(),
        );
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("airlock-system"));
        assert_eq!(s.metadata.annotations, None);
        let labels = s.metadata.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/part-of"], "airlock");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "airlock-operator");
    }
}
