//! The wire format shared with kitex-contrib/registry-etcd.
//!
//! Key: `<prefix>/<service>/<host:port>`. Value: the JSON of Go's `instanceInfo`,
//! `{"network":"tcp","address":"host:port","weight":10,"tags":{...}}`. Go writes `"tags":null`
//! for a server without tags, so both `null` and a missing field read as "no tags".

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use volo::{discovery::Instance, net::Address};

use crate::options::DEFAULT_WEIGHT;

/// One registered instance, as stored in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Always `tcp` for what we write; Go's net.Addr network name.
    #[serde(default)]
    pub network: String,
    /// `host:port` clients connect to.
    pub address: String,
    /// Load-balancing weight; readers treat `<= 0` (and a missing field) as 10.
    #[serde(default)]
    pub weight: i64,
    /// Free-form metadata; `null` in Go when the server has none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: BTreeMap<String, String>,
}

fn null_as_empty<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

impl InstanceRecord {
    /// The record a server at `address` writes (weight 0 becomes 10, as Kitex does).
    pub fn new(address: SocketAddr, weight: u32, tags: BTreeMap<String, String>) -> Self {
        Self {
            network: "tcp".to_owned(),
            address: address.to_string(),
            weight: i64::from(if weight == 0 { DEFAULT_WEIGHT } else { weight }),
            tags,
        }
    }

    /// JSON for the etcd value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a map of strings always serializes")
    }

    /// Parses a value and turns it into a Volo instance; the error says why it cannot be used.
    pub fn parse_instance(value: &[u8]) -> Result<Instance, String> {
        let record: InstanceRecord =
            serde_json::from_slice(value).map_err(|e| format!("not an instance record: {e}"))?;
        record.into_instance()
    }

    /// Converts to a Volo instance. Only IP `host:port` addresses are usable by Volo's TCP
    /// transport; other networks and host names are rejected.
    pub fn into_instance(self) -> Result<Instance, String> {
        if !self.network.is_empty() && self.network != "tcp" {
            return Err(format!("unsupported network {:?}", self.network));
        }
        let addr: SocketAddr = self
            .address
            .parse()
            .map_err(|_| format!("address {:?} is not an IP host:port", self.address))?;
        let weight = if self.weight <= 0 {
            DEFAULT_WEIGHT
        } else {
            u32::try_from(self.weight).unwrap_or(u32::MAX)
        };
        let tags: HashMap<Cow<'static, str>, Cow<'static, str>> = self
            .tags
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
            .collect();
        Ok(Instance {
            address: Address::Ip(addr),
            weight,
            tags,
        })
    }
}

/// `<prefix>/<service>/<host:port>`.
pub(crate) fn instance_key(prefix: &str, service: &str, address: SocketAddr) -> String {
    format!("{}/{service}/{address}", prefix.trim_end_matches('/'))
}

/// Instances sorted by address, the order every published list uses.
pub(crate) fn sorted(mut list: Vec<Arc<Instance>>) -> Vec<Arc<Instance>> {
    list.sort_by_cached_key(|a| a.address.to_string());
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_registry_etcd_json() {
        let r = InstanceRecord::new("10.0.0.5:9000".parse().unwrap(), 0, BTreeMap::new());
        assert_eq!(
            r.to_json(),
            r#"{"network":"tcp","address":"10.0.0.5:9000","weight":10,"tags":{}}"#
        );
    }

    #[test]
    fn reads_go_records() {
        let i = InstanceRecord::parse_instance(
            br#"{"network":"tcp","address":"10.0.0.5:9000","weight":0,"tags":null}"#,
        )
        .unwrap();
        assert_eq!(i.weight, 10);
        assert_eq!(i.address, Address::Ip("10.0.0.5:9000".parse().unwrap()));
        assert!(i.tags.is_empty());

        let i = InstanceRecord::parse_instance(
            br#"{"network":"tcp","address":"[::1]:1","weight":-3,"tags":{"env":"dev"}}"#,
        )
        .unwrap();
        assert_eq!(i.weight, 10);
        assert_eq!(i.tags.get("env").map(|v| v.as_ref()), Some("dev"));

        let i = InstanceRecord::parse_instance(br#"{"address":"1.2.3.4:5","weight":7}"#).unwrap();
        assert_eq!(i.weight, 7);
    }

    #[test]
    fn rejects_unusable_values() {
        assert!(InstanceRecord::parse_instance(b"not json").is_err());
        assert!(InstanceRecord::parse_instance(br#"{"address":"host:80"}"#).is_err());
        assert!(
            InstanceRecord::parse_instance(br#"{"network":"unix","address":"/tmp/s"}"#).is_err()
        );
    }

    #[test]
    fn ipv6_keys_use_brackets() {
        let k = instance_key("kitex/registry-etcd/", "user", "[::1]:80".parse().unwrap());
        assert_eq!(k, "kitex/registry-etcd/user/[::1]:80");
    }
}
