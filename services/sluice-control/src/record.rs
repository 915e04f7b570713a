//! The typed configuration records control keeps, keyed by (kind, name).

use sluice_proto::v1::{Pool, SitePolicy, SourceIp, Tenant, WarmupPlan, config_change::Change};

/// The kinds of named configuration record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pool,
    Ip,
    WarmupPlan,
    SitePolicy,
    Tenant,
}

impl Kind {
    /// Every kind, in the order a snapshot lists them.
    pub const ALL: [Kind; 5] = [
        Kind::Pool,
        Kind::WarmupPlan,
        Kind::Ip,
        Kind::SitePolicy,
        Kind::Tenant,
    ];

    /// Stable lower-case name, used in store keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Ip => "ip",
            Kind::WarmupPlan => "warmup_plan",
            Kind::SitePolicy => "site_policy",
            Kind::Tenant => "tenant",
        }
    }
}

/// One named configuration record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Pool(Pool),
    Ip(SourceIp),
    WarmupPlan(WarmupPlan),
    SitePolicy(SitePolicy),
    Tenant(Tenant),
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Pool(_) => Kind::Pool,
            Record::Ip(_) => Kind::Ip,
            Record::WarmupPlan(_) => Kind::WarmupPlan,
            Record::SitePolicy(_) => Kind::SitePolicy,
            Record::Tenant(_) => Kind::Tenant,
        }
    }

    /// The record's name within its kind.
    pub fn name(&self) -> &str {
        match self {
            Record::Pool(p) => &p.name,
            Record::Ip(ip) => &ip.address,
            Record::WarmupPlan(p) => &p.name,
            Record::SitePolicy(s) => &s.site,
            Record::Tenant(t) => &t.name,
        }
    }

    /// The change that announces this record was written.
    pub fn into_change(self) -> Change {
        match self {
            Record::Pool(p) => Change::Pool(p),
            Record::Ip(ip) => Change::Ip(ip),
            Record::WarmupPlan(p) => Change::WarmupPlan(p),
            Record::SitePolicy(s) => Change::SitePolicy(s),
            Record::Tenant(t) => Change::Tenant(t),
        }
    }
}
