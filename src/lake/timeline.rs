//! The Hudi timeline (layout 1): instant files in `.hoodie/`, their names,
//! and instant times.
//!
//! An instant time is 17 digits, `yyyyMMddHHmmssSSS` in UTC. Times are
//! strictly increasing across restarts and clock skew: a new instant is the
//! later of the wall clock and the last instant on the timeline plus one
//! millisecond, computed as a calendar time so it always stays a valid date
//! (Java parses instant times as dates for time travel).

use std::fmt;

use crate::event::time::{civil_from_days, days_from_civil};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Commit,
    DeltaCommit,
    ReplaceCommit,
    Clean,
    Rollback,
    Other(String),
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Commit => "commit",
            Action::DeltaCommit => "deltacommit",
            Action::ReplaceCommit => "replacecommit",
            Action::Clean => "clean",
            Action::Rollback => "rollback",
            Action::Other(name) => name,
        }
    }

    /// Actions whose completed instants publish data files.
    pub fn writes_data(&self) -> bool {
        matches!(
            self,
            Action::Commit | Action::DeltaCommit | Action::ReplaceCommit
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Requested,
    Inflight,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    pub time: String,
    pub action: Action,
    pub state: State,
}

impl Instant {
    pub fn new(time: impl Into<String>, action: Action, state: State) -> Instant {
        Instant {
            time: time.into(),
            action,
            state,
        }
    }

    /// The file name under `.hoodie/` (layout 1; a commit's inflight file is
    /// `<t>.inflight`, not `<t>.commit.inflight`).
    pub fn file_name(&self) -> String {
        let t = &self.time;
        match (&self.action, self.state) {
            (Action::Commit, State::Inflight) => format!("{t}.inflight"),
            (a, State::Requested) => format!("{t}.{}.requested", a.name()),
            (a, State::Inflight) => format!("{t}.{}.inflight", a.name()),
            (a, State::Completed) => format!("{t}.{}", a.name()),
        }
    }

    /// Parses a `.hoodie/` file name; `None` for anything that is not an
    /// instant (`hoodie.properties`, directories, temporary files).
    pub fn parse(name: &str) -> Option<Instant> {
        let (time, rest) = name.split_once('.')?;
        if time.len() < 14 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (action, state) = match rest.split_once('.') {
            None if rest == "inflight" => (Action::Commit, State::Inflight),
            None => (action_of(rest)?, State::Completed),
            Some((a, "requested")) => (action_of(a)?, State::Requested),
            Some((a, "inflight")) => (action_of(a)?, State::Inflight),
            Some(_) => return None,
        };
        Some(Instant::new(time, action, state))
    }
}

fn action_of(name: &str) -> Option<Action> {
    Some(match name {
        "commit" => Action::Commit,
        "deltacommit" => Action::DeltaCommit,
        "replacecommit" => Action::ReplaceCommit,
        "clean" => Action::Clean,
        "rollback" => Action::Rollback,
        "compaction" | "logcompaction" | "savepoint" | "restore" | "indexing" => {
            Action::Other(name.to_string())
        }
        _ => return None,
    })
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// The instants found in `.hoodie/`, one entry per (time, action) at its most
/// advanced state.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    instants: Vec<Instant>,
}

impl Timeline {
    /// Builds from file names of `.hoodie/`.
    pub fn from_file_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Timeline {
        let mut all: Vec<Instant> = names.into_iter().filter_map(Instant::parse).collect();
        all.sort();
        // Keep the most advanced state of each (time, action).
        let mut instants: Vec<Instant> = Vec::new();
        for i in all {
            match instants.last_mut() {
                Some(last) if last.time == i.time && last.action == i.action => {
                    if i.state > last.state {
                        *last = i;
                    }
                }
                _ => instants.push(i),
            }
        }
        Timeline { instants }
    }

    pub fn instants(&self) -> &[Instant] {
        &self.instants
    }

    /// Completed instants of actions that write data, oldest first.
    pub fn completed_commits(&self) -> impl Iterator<Item = &Instant> {
        self.instants
            .iter()
            .filter(|i| i.state == State::Completed && i.action.writes_data())
    }

    /// Data-writing instants that never completed: failed writes to roll back.
    pub fn pending_commits(&self) -> impl Iterator<Item = &Instant> {
        self.instants
            .iter()
            .filter(|i| i.state != State::Completed && i.action.writes_data())
    }

    /// Clean and rollback instants that never completed: leftovers of a
    /// crashed cleaner or rollback, which are redone from the table's state.
    pub fn pending_table_services(&self) -> impl Iterator<Item = &Instant> {
        self.instants.iter().filter(|i| {
            i.state != State::Completed && matches!(i.action, Action::Clean | Action::Rollback)
        })
    }

    pub fn is_completed_commit(&self, time: &str) -> bool {
        self.completed_commits().any(|i| i.time == time)
    }

    /// The latest instant time of any action and state.
    pub fn last_time(&self) -> Option<&str> {
        self.instants.iter().map(|i| i.time.as_str()).max()
    }

    /// The earliest completed commit still on the active timeline: base files
    /// of older instants were written by archived (committed) commits.
    pub fn first_completed_commit(&self) -> Option<&str> {
        self.completed_commits().map(|i| i.time.as_str()).min()
    }

    /// Whether a base file written by `time` belongs to the table: its commit
    /// completed, or it predates the active timeline (archived).
    pub fn is_visible(&self, time: &str) -> bool {
        if self.is_completed_commit(time) {
            return true;
        }
        let pending = self.pending_commits().any(|i| i.time == time);
        !pending
            && self
                .first_completed_commit()
                .is_some_and(|first| time < first)
    }
}

/// Milliseconds since the epoch of an instant time, or `None` if malformed.
pub fn instant_millis(time: &str) -> Option<i64> {
    let digit = |range: std::ops::Range<usize>| -> Option<i64> { time.get(range)?.parse().ok() };
    if time.len() != 17 {
        return None;
    }
    let (y, mo, d) = (digit(0..4)?, digit(4..6)?, digit(6..8)?);
    let (h, mi, s, ms) = (
        digit(8..10)?,
        digit(10..12)?,
        digit(12..14)?,
        digit(14..17)?,
    );
    let days = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// The instant time of milliseconds since the epoch.
pub fn format_instant(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let ms_of_day = millis.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{ms:03}")
}

/// A new instant time after `last` (if any) and not before `now_millis`.
pub fn next_instant(now_millis: i64, last: Option<&str>) -> String {
    let floor = last.and_then(instant_millis).map_or(i64::MIN, |l| l + 1);
    format_instant(now_millis.max(floor))
}

/// The wall clock in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for (name, action, state) in [
            (
                "20240418173213674.commit.requested",
                Action::Commit,
                State::Requested,
            ),
            (
                "20240418173213674.inflight",
                Action::Commit,
                State::Inflight,
            ),
            ("20240418173213674.commit", Action::Commit, State::Completed),
            (
                "20240418173213674.clean.inflight",
                Action::Clean,
                State::Inflight,
            ),
            (
                "20240418173213674.rollback",
                Action::Rollback,
                State::Completed,
            ),
        ] {
            let i = Instant::parse(name).unwrap();
            assert_eq!((i.action.clone(), i.state), (action, state), "{name}");
            assert_eq!(i.file_name(), name);
        }
        assert_eq!(Instant::parse("hoodie.properties"), None);
        assert_eq!(Instant::parse("20240418173213674.commit.crc"), None);
        assert_eq!(Instant::parse(".temp"), None);
    }

    #[test]
    fn timeline_tracks_pending_and_visible() {
        let t = Timeline::from_file_names([
            "20240101000000000.commit.requested",
            "20240101000000000.inflight",
            "20240101000000000.commit",
            "20240102000000000.commit.requested",
            "20240102000000000.inflight",
            "20240103000000000.clean.requested",
            "hoodie.properties",
        ]);
        assert_eq!(t.completed_commits().count(), 1);
        let pending: Vec<&str> = t.pending_commits().map(|i| i.time.as_str()).collect();
        assert_eq!(pending, vec!["20240102000000000"]);
        assert!(t.is_visible("20240101000000000"));
        assert!(!t.is_visible("20240102000000000"));
        assert!(
            t.is_visible("20231231000000000"),
            "before the active timeline: archived"
        );
        assert_eq!(t.last_time(), Some("20240103000000000"));
    }

    #[test]
    fn instant_times_increase_and_stay_valid_dates() {
        let t = "20241231235959999";
        assert_eq!(format_instant(instant_millis(t).unwrap()), t);
        // The clock is behind the last instant: one millisecond later, a valid date.
        let now = instant_millis("20241231000000000").unwrap();
        assert_eq!(next_instant(now, Some(t)), "20250101000000000");
        // The clock is ahead: the clock wins.
        let later = instant_millis("20250102030405006").unwrap();
        assert_eq!(next_instant(later, Some(t)), "20250102030405006");
        assert_eq!(next_instant(later, None), "20250102030405006");
    }
}
