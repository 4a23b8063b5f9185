//! The presence status resource (PRODUCT.md, "HTTP API"): what `GET /v1/presence/{identity}`
//! returns and what a `presence` event carries.
//!
//! ```json
//! {"identity":"alice","status":"available","devices":[{"device_id":"3f2a…","status":"available",
//!  "connected_at":"2026-11-24T05:48:00Z","last_seen":"2026-11-24T05:49:30Z","incoming":true}]}
//! ```
//! `last_seen` is an addition to the contract (when the gateway last heard from the device).
//! Times are RFC 3339 in UTC with whole seconds.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

use crate::device::DeviceId;
use crate::identity::Identity;

/// The status a client chooses for one device (`presence {status}` on the WebSocket).
///
/// `dnd` is not in the resource's vocabulary (`available|busy|away|offline`): a `dnd` device is
/// shown as `busy`, and like `busy` it is not offered calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and taking calls (the status of a newly connected device).
    #[default]
    Available,
    /// Not at the device, but still offered calls.
    Away,
    /// Not taking calls (set by the user; a device in a call is busy regardless).
    Busy,
    /// Do not disturb: not offered calls, shown as `busy`.
    Dnd,
}

/// A status as the resource shows it: of one device, or the aggregate of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    /// At least one device is available and none is busy.
    Available,
    /// A device is in a call, or its user set it busy or do-not-disturb.
    Busy,
    /// Every device is away.
    Away,
    /// No device is connected.
    Offline,
}

/// The presence status resource of one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceResource {
    /// Whose presence this is.
    pub identity: Identity,
    /// The aggregate over [`PresenceResource::devices`] (see [`PresenceStatus::aggregate`]).
    pub status: PresenceStatus,
    /// The connected devices, oldest connection first.
    pub devices: Vec<DeviceResource>,
}

/// One connected device in a [`PresenceResource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceResource {
    /// The device's id, unique while it is connected.
    pub device_id: DeviceId,
    /// `available`, `busy` or `away` (never `offline`: an offline device is not listed).
    pub status: PresenceStatus,
    /// When the device connected.
    #[serde(serialize_with = "serialize_time")]
    pub connected_at: SystemTime,
    /// When the gateway last heard from the device (a message or a pong).
    #[serde(serialize_with = "serialize_time")]
    pub last_seen: SystemTime,
    /// Whether the device registered for incoming calls.
    pub incoming: bool,
}

impl PresenceStatus {
    /// What a device shows, given the status its user chose and whether it is in a call.
    pub fn of_device(chosen: Status, in_call: bool) -> PresenceStatus {
        match chosen {
            _ if in_call => PresenceStatus::Busy,
            Status::Available => PresenceStatus::Available,
            Status::Away => PresenceStatus::Away,
            Status::Busy | Status::Dnd => PresenceStatus::Busy,
        }
    }

    /// The status of an identity from its devices' statuses: `offline` with no device; `busy` if
    /// any device is busy (a person on a call is busy even if another device is free: routing
    /// asks per device, the aggregate is for people); else `available` if any device is; else
    /// `away`.
    pub fn aggregate(devices: impl IntoIterator<Item = PresenceStatus>) -> PresenceStatus {
        let mut aggregate = PresenceStatus::Offline;
        for status in devices {
            aggregate = match (aggregate, status) {
                (PresenceStatus::Busy, _) | (_, PresenceStatus::Busy) => PresenceStatus::Busy,
                (PresenceStatus::Available, _) | (_, PresenceStatus::Available) => {
                    PresenceStatus::Available
                }
                (_, PresenceStatus::Away) => PresenceStatus::Away,
                (previous, PresenceStatus::Offline) => previous,
            };
        }
        aggregate
    }
}

impl PresenceResource {
    /// The resource of an identity with no connected device.
    pub fn offline(identity: Identity) -> PresenceResource {
        PresenceResource {
            identity,
            status: PresenceStatus::Offline,
            devices: Vec::new(),
        }
    }
}

/// Formats `time` as RFC 3339 in UTC with whole seconds (`2026-11-24T05:48:00Z`).
/// Times before 1970 are shown as the epoch.
pub fn format_rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

fn serialize_time<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339(*time))
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
///
/// Works in 400-year eras (146,097 days each, a whole number of weeks and leap cycles) counted
/// from 0000-03-01, so that the leap day is the last day of each computed year.
fn civil_from_days(days_since_epoch: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    // Years of 365 days, corrected for the leap days of every 4th, 100th and 400th year.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 153 days per 5 months (31, 30, 31, 30, 31).
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(at(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(at(4_107_542_399)), "2100-02-28T23:59:59Z");
        assert_eq!(format_rfc3339(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn days_round_trip_through_dates_in_order() {
        // Consecutive days give consecutive, valid dates: a day later is the next date.
        let mut previous = civil_from_days(0);
        for days in 1..200_000 {
            let date = civil_from_days(days);
            let (_, month, day) = date;
            assert!((1..=12).contains(&month) && (1..=31).contains(&day));
            let next_of_previous = if date.2 == 1 {
                assert!(previous.2 >= 28, "{previous:?} -> {date:?}");
                if month == 1 {
                    (previous.0 + 1, 1, 1)
                } else {
                    (previous.0, previous.1 + 1, 1)
                }
            } else {
                (previous.0, previous.1, previous.2 + 1)
            };
            assert_eq!(date, next_of_previous);
            previous = date;
        }
    }

    #[test]
    fn device_status_shows_calls_and_dnd_as_busy() {
        assert_eq!(
            PresenceStatus::of_device(Status::Available, false),
            PresenceStatus::Available
        );
        assert_eq!(
            PresenceStatus::of_device(Status::Away, false),
            PresenceStatus::Away
        );
        assert_eq!(
            PresenceStatus::of_device(Status::Dnd, false),
            PresenceStatus::Busy
        );
        assert_eq!(
            PresenceStatus::of_device(Status::Available, true),
            PresenceStatus::Busy
        );
        assert_eq!(
            PresenceStatus::of_device(Status::Away, true),
            PresenceStatus::Busy
        );
    }

    #[test]
    fn aggregate_prefers_busy_then_available_then_away() {
        use PresenceStatus::*;
        assert_eq!(PresenceStatus::aggregate([]), Offline);
        assert_eq!(PresenceStatus::aggregate([Away]), Away);
        assert_eq!(PresenceStatus::aggregate([Away, Available]), Available);
        assert_eq!(PresenceStatus::aggregate([Available, Away]), Available);
        assert_eq!(PresenceStatus::aggregate([Available, Busy, Away]), Busy);
        assert_eq!(PresenceStatus::aggregate([Busy, Available]), Busy);
        assert_eq!(PresenceStatus::aggregate([Away, Away]), Away);
    }

    #[test]
    fn statuses_serialize_in_lowercase() {
        assert_eq!(serde_json::to_string(&Status::Dnd).unwrap(), "\"dnd\"");
        assert_eq!(
            serde_json::from_str::<Status>("\"away\"").unwrap(),
            Status::Away
        );
        assert!(serde_json::from_str::<Status>("\"offline\"").is_err());
        assert_eq!(
            serde_json::to_string(&PresenceStatus::Offline).unwrap(),
            "\"offline\""
        );
    }
}
