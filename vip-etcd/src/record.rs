//! The leader record as the value of the etcd key: JSON with the Lease
//! spec's field names and MicroTime-formatted times, so `etcdctl get`
//! shows what `kubectl get lease -o yaml` would.
//!
//! ```
//! use vip_core::LeaderRecord;
//! use vip_etcd::record::{decode, encode};
//!
//! let record = LeaderRecord { holder_identity: "node-a".into(), lease_duration_seconds: 5, ..LeaderRecord::default() };
//! assert_eq!(decode(&encode(&record)).unwrap(), record);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vip_core::LeaderRecord;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The value is not a vip leader record.
    #[error("the value is not a vip leader record")]
    NotARecord(#[source] serde_json::Error),
    /// A time field is not an RFC 3339 timestamp.
    #[error("{field} {value:?} is not an RFC 3339 timestamp")]
    BadTime {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The parser's error.
        #[source]
        source: jiff::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    holder_identity: String,
    lease_duration_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renew_time: Option<String>,
    #[serde(default)]
    lease_transitions: u32,
}

fn micro(t: SystemTime) -> String {
    let micros = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    };
    let ts = jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.6}")
}

fn parse_time(field: &'static str, value: &str) -> Result<SystemTime, RecordError> {
    let ts: jiff::Timestamp = value.parse().map_err(|source| RecordError::BadTime {
        field,
        value: value.to_owned(),
        source,
    })?;
    let micros = ts.as_microsecond();
    Ok(if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    })
}

/// The record as the key's value (JSON).
pub fn encode(record: &LeaderRecord) -> Vec<u8> {
    let wire = Wire {
        holder_identity: record.holder_identity.clone(),
        lease_duration_seconds: record.lease_duration_seconds,
        acquire_time: record.acquire_time.map(micro),
        renew_time: record.renew_time.map(micro),
        lease_transitions: record.lease_transitions,
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The record a key's value holds.
pub fn decode(value: &[u8]) -> Result<LeaderRecord, RecordError> {
    let wire: Wire = serde_json::from_slice(value).map_err(RecordError::NotARecord)?;
    Ok(LeaderRecord {
        holder_identity: wire.holder_identity,
        lease_duration_seconds: wire.lease_duration_seconds,
        acquire_time: wire
            .acquire_time
            .as_deref()
            .map(|v| parse_time("acquireTime", v))
            .transpose()?,
        renew_time: wire
            .renew_time
            .as_deref()
            .map(|v| parse_time("renewTime", v))
            .transpose()?,
        lease_transitions: wire.lease_transitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_reads_like_the_lease_spec_and_round_trips() {
        let record = LeaderRecord {
            holder_identity: "node-a".into(),
            lease_duration_seconds: 5,
            acquire_time: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001)),
            renew_time: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_004_500_000)),
            lease_transitions: 3,
        };
        let value = encode(&record);
        let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(json["holderIdentity"], "node-a");
        assert_eq!(json["leaseDurationSeconds"], 5);
        assert_eq!(json["leaseTransitions"], 3);
        assert_eq!(json["renewTime"], "2023-11-14T22:13:24.500000Z");
        assert_eq!(json["acquireTime"], "2023-11-14T22:13:20.000001Z");
        assert_eq!(decode(&value).unwrap(), record);
        let empty = LeaderRecord::default();
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert!(matches!(decode(b"nope"), Err(RecordError::NotARecord(_))));
        let e =
            decode(br#"{"holderIdentity":"a","leaseDurationSeconds":5,"renewTime":"yesterday"}"#)
                .unwrap_err();
        assert!(e.to_string().contains("renewTime"), "{e}");
    }
}
