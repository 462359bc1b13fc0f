//! GTID positions of both flavours, as text and as sets that can be
//! compared: MariaDB's per-domain position (`0-1-100,1-2-7`: domain,
//! server id, sequence number of the last transaction per domain) and
//! MySQL's executed set (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7`).
//!
//! tidewater resumes from a binlog file and position; the GTID recorded with
//! it is how a restart proves the server still has that history:
//! [`Gtids::contained_in`] the server's own set, otherwise the binlog was
//! reset or the server is another one (stop, G6).

use std::collections::BTreeMap;
use std::fmt;

/// A GTID position of either flavour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Gtids {
    /// No GTID seen (an empty binlog, or a server without GTIDs).
    #[default]
    Empty,
    /// MariaDB: domain → (server id, sequence number).
    Mariadb(BTreeMap<u32, (u32, u64)>),
    /// MySQL: source UUID → sorted, disjoint, inclusive intervals.
    Mysql(BTreeMap<String, Vec<(u64, u64)>>),
}

impl Gtids {
    /// Parses either flavour; the empty string is [`Gtids::Empty`].
    pub fn parse(text: &str) -> Result<Gtids, String> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.is_empty() {
            return Ok(Gtids::Empty);
        }
        if text.contains(':') {
            parse_mysql(&text)
        } else {
            parse_mariadb(&text)
        }
    }

    /// Records a MariaDB GTID `domain-server-seq`.
    pub fn add_mariadb(&mut self, domain: u32, server: u32, seq: u64) {
        if !matches!(self, Gtids::Mariadb(_)) {
            *self = Gtids::Mariadb(BTreeMap::new());
        }
        if let Gtids::Mariadb(map) = self {
            map.insert(domain, (server, seq));
        }
    }

    /// Records a MySQL GTID `uuid:gno`.
    pub fn add_mysql(&mut self, uuid: &str, gno: u64) {
        if !matches!(self, Gtids::Mysql(_)) {
            *self = Gtids::Mysql(BTreeMap::new());
        }
        if let Gtids::Mysql(map) = self {
            let intervals = map.entry(uuid.to_ascii_lowercase()).or_default();
            intervals.push((gno, gno));
            normalize(intervals);
        }
    }

    /// Whether every transaction in `self` is also in `server`: MariaDB, for
    /// every domain the server is at the same or a later sequence number;
    /// MySQL, set inclusion.
    pub fn contained_in(&self, server: &Gtids) -> bool {
        match (self, server) {
            (Gtids::Empty, _) => true,
            (Gtids::Mariadb(ours), Gtids::Mariadb(theirs)) => ours
                .iter()
                .all(|(domain, (_, seq))| theirs.get(domain).is_some_and(|(_, s)| s >= seq)),
            (Gtids::Mysql(ours), Gtids::Mysql(theirs)) => ours.iter().all(|(uuid, intervals)| {
                let Some(have) = theirs.get(uuid) else {
                    return false;
                };
                intervals
                    .iter()
                    .all(|(a, b)| have.iter().any(|(x, y)| x <= a && b <= y))
            }),
            _ => false,
        }
    }
}

impl fmt::Display for Gtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtids::Empty => Ok(()),
            Gtids::Mariadb(map) => {
                let parts: Vec<String> = map
                    .iter()
                    .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                    .collect();
                f.write_str(&parts.join(","))
            }
            Gtids::Mysql(map) => {
                let parts: Vec<String> = map
                    .iter()
                    .map(|(uuid, intervals)| {
                        let mut out = uuid.clone();
                        for (a, b) in intervals {
                            if a == b {
                                out.push_str(&format!(":{a}"));
                            } else {
                                out.push_str(&format!(":{a}-{b}"));
                            }
                        }
                        out
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

fn parse_mariadb(text: &str) -> Result<Gtids, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("`{part}` is not a MariaDB GTID (domain-server-sequence)");
        let mut it = part.split('-');
        let (Some(d), Some(s), Some(n), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let domain: u32 = d.parse().map_err(|_| bad())?;
        let server: u32 = s.parse().map_err(|_| bad())?;
        let seq: u64 = n.parse().map_err(|_| bad())?;
        if map.insert(domain, (server, seq)).is_some() {
            return Err(format!("domain {domain} appears twice in `{text}`"));
        }
    }
    Ok(Gtids::Mariadb(map))
}

fn parse_mysql(text: &str) -> Result<Gtids, String> {
    let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let uuid = it.next().unwrap_or_default().to_ascii_lowercase();
        let hex = uuid.chars().filter(|c| c.is_ascii_hexdigit()).count();
        if hex != 32 || uuid.len() != 36 {
            return Err(format!("`{part}`: `{uuid}` is not a server UUID"));
        }
        let intervals = map.entry(uuid).or_default();
        let mut any = false;
        for range in it {
            let bad = || format!("`{part}`: `{range}` is not a GTID interval (n or n-m)");
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (
                    a.parse::<u64>().map_err(|_| bad())?,
                    b.parse::<u64>().map_err(|_| bad())?,
                ),
                None => {
                    let n = range.parse::<u64>().map_err(|_| bad())?;
                    (n, n)
                }
            };
            if a == 0 || b < a {
                return Err(bad());
            }
            intervals.push((a, b));
            any = true;
        }
        if !any {
            return Err(format!("`{part}` has no transaction numbers"));
        }
        normalize(intervals);
    }
    Ok(Gtids::Mysql(map))
}

/// Sorts and merges touching or overlapping intervals.
fn normalize(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(a, b) in intervals.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *intervals = out;
}

/// A MariaDB GTID event's body (type 162): sequence number, domain and
/// flags; the server id is the event header's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtid {
    pub seq: u64,
    pub domain: u32,
    pub flags: u8,
}

impl MariadbGtid {
    /// A DDL or non-transactional statement: no XID event ends it.
    pub const STANDALONE: u8 = 1;

    pub fn parse(body: &[u8]) -> Result<MariadbGtid, String> {
        let seq = body
            .get(0..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        let domain = body
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        match (seq, domain, body.get(12)) {
            (Some(seq), Some(domain), Some(flags)) => Ok(MariadbGtid {
                seq,
                domain,
                flags: *flags,
            }),
            _ => Err(format!(
                "a MariaDB GTID event of {} bytes (at least 13 expected)",
                body.len()
            )),
        }
    }

    pub fn standalone(&self) -> bool {
        self.flags & Self::STANDALONE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_positions_parse_print_and_compare() {
        let ours = Gtids::parse("0-1-100,2-5-7").unwrap();
        assert_eq!(ours.to_string(), "0-1-100,2-5-7");
        assert!(ours.contained_in(&Gtids::parse("0-1-100,2-5-9").unwrap()));
        assert!(ours.contained_in(&Gtids::parse("0-3-150, 2-5-7, 9-9-9").unwrap()));
        // RESET MASTER: the server's position went back, or lost a domain.
        assert!(!ours.contained_in(&Gtids::parse("0-1-4,2-5-7").unwrap()));
        assert!(!ours.contained_in(&Gtids::parse("0-1-100").unwrap()));
        assert!(!ours.contained_in(&Gtids::Empty));
        assert!(Gtids::Empty.contained_in(&ours));
        assert!(Gtids::parse("0-1").is_err());
        assert!(Gtids::parse("0-1-x").is_err());
        assert!(Gtids::parse("0-1-2,0-1-3").is_err());
        let mut g = Gtids::Empty;
        g.add_mariadb(0, 1, 5);
        g.add_mariadb(0, 2, 6);
        g.add_mariadb(1, 1, 1);
        assert_eq!(g.to_string(), "0-2-6,1-1-1");
    }

    #[test]
    fn mysql_sets_parse_merge_and_compare() {
        let a = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        let set = Gtids::parse(&format!(
            "{a}:1-5:7:6, 4e11fa47-71ca-11e1-9e33-c80aa9429562:3"
        ))
        .unwrap();
        assert_eq!(
            set.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3"
        );
        let mut ours = Gtids::Empty;
        ours.add_mysql(a, 1);
        ours.add_mysql(a, 2);
        ours.add_mysql(a, 4);
        assert_eq!(
            ours.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-2:4"
        );
        assert!(ours.contained_in(&set));
        ours.add_mysql(a, 9);
        assert!(!ours.contained_in(&set));
        assert!(!ours.contained_in(&Gtids::parse("0-1-5").unwrap()));
        assert!(Gtids::parse("nope:1-2").is_err());
        assert!(Gtids::parse(&format!("{a}:5-3")).is_err());
        assert!(Gtids::parse(&format!("{a}:0")).is_err());
        assert!(Gtids::parse(a).is_err());
    }

    #[test]
    fn mariadb_gtid_events_parse() {
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend(3u32.to_le_bytes());
        body.push(0x29);
        body.extend([0; 6]);
        let g = MariadbGtid::parse(&body).unwrap();
        assert_eq!(
            g,
            MariadbGtid {
                seq: 42,
                domain: 3,
                flags: 0x29
            }
        );
        assert!(g.standalone());
        assert!(MariadbGtid::parse(&body[..12]).is_err());
    }
}
