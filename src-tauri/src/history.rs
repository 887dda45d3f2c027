//! The desktop's count history: every count change of every site it
//! watches, in an embedded SQLite database in the app's data directory, so
//! "how busy was it today" survives restarts.
//!
//! One row per change (`site`, `t` in Unix milliseconds, `count`); an
//! unchanged count is not written again. Rows older than [`KEEP`] are pruned.
//! The schema is versioned with SQLite's `user_version` and migrated
//! forward on open, one step per version, in a transaction. The window's
//! chart asks for per-minute points ([`minute_points`]) in the same shape as
//! a whosin server's count history, so one drawing code (`ui/chart.js`)
//! serves both, and the server's history can fill the time the app was not
//! running ([`HistoryStore::fill`]).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How long rows are kept.
pub const KEEP: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The schema version this code writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite said no.
    #[error("history database {path}: {source} (delete the file to start a fresh history)")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer whosin.
    #[error("history database {path} has schema version {found}, newer than this whosin's {SCHEMA_VERSION}: update whosin, or move the file away")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i32,
    },
}

/// One minute of a site's count: its highest and its last value, and the
/// minute's start (Unix seconds) — the server's history format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Point {
    /// The minute's start, Unix seconds.
    pub t: i64,
    /// The highest count in that minute.
    pub peak: u32,
    /// The count at the minute's end (or now).
    pub last: u32,
}

/// The history database.
#[derive(Debug)]
pub struct HistoryStore {
    conn: Connection,
    path: String,
}

impl HistoryStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<HistoryStore, HistoryError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| HistoryError::Db {
            path: name.clone(),
            source,
        })?;
        Self::ready(conn, name)
    }

    /// A database in memory (tests).
    pub fn in_memory() -> Result<HistoryStore, HistoryError> {
        let conn = Connection::open_in_memory().map_err(|source| HistoryError::Db {
            path: ":memory:".into(),
            source,
        })?;
        Self::ready(conn, ":memory:".into())
    }

    fn ready(conn: Connection, path: String) -> Result<HistoryStore, HistoryError> {
        let mut store = HistoryStore { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn db(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version the file has.
    pub fn version(&self) -> Result<i32, HistoryError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.db(e))
    }

    /// Brings the schema to [`SCHEMA_VERSION`], one step at a time.
    fn migrate(&mut self) -> Result<(), HistoryError> {
        // WAL: a write does not wait for readers, and costs one append.
        let _ = self.conn.pragma_update(None, "journal_mode", "WAL");
        let _ = self.conn.pragma_update(None, "synchronous", "NORMAL");
        let found = self.version()?;
        if found > SCHEMA_VERSION {
            return Err(HistoryError::TooNew {
                path: self.path.clone(),
                found,
            });
        }
        for v in found..SCHEMA_VERSION {
            let step = match v {
                0 => {
                    "CREATE TABLE counts (site TEXT NOT NULL, t INTEGER NOT NULL, count INTEGER NOT NULL);
                     CREATE INDEX counts_site_t ON counts (site, t);"
                }
                _ => unreachable_step(v),
            };
            let tx = self.conn.transaction().map_err(|e| HistoryError::Db {
                path: self.path.clone(),
                source: e,
            })?;
            tx.execute_batch(step)
                .and_then(|()| tx.pragma_update(None, "user_version", v + 1))
                .and_then(|()| tx.commit())
                .map_err(|e| HistoryError::Db {
                    path: self.path.clone(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// Records that `site` has `count` at `t_ms` (Unix milliseconds); a
    /// count equal to the last one recorded is not written again.
    pub fn record(&self, site: &str, t_ms: i64, count: u32) -> Result<bool, HistoryError> {
        let last: Option<u32> = self
            .conn
            .query_row(
                "SELECT count FROM counts WHERE site = ?1 ORDER BY t DESC LIMIT 1",
                params![site],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        if last == Some(count) {
            return Ok(false);
        }
        self.conn
            .execute(
                "INSERT INTO counts (site, t, count) VALUES (?1, ?2, ?3)",
                params![site, t_ms, count],
            )
            .map_err(|e| self.db(e))?;
        Ok(true)
    }

    /// When `site`'s newest row was written (Unix milliseconds).
    pub fn last_time(&self, site: &str) -> Result<Option<i64>, HistoryError> {
        self.conn
            .query_row(
                "SELECT MAX(t) FROM counts WHERE site = ?1",
                params![site],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))
    }

    /// Deletes rows older than [`KEEP`] before `now_ms`; returns how many.
    pub fn prune(&self, now_ms: i64) -> Result<usize, HistoryError> {
        let cutoff = now_ms - KEEP.as_millis() as i64;
        self.conn
            .execute("DELETE FROM counts WHERE t < ?1", params![cutoff])
            .map_err(|e| self.db(e))
    }

    /// `site`'s changes from `from_ms` to `to_ms`, led by the last change
    /// before `from_ms` (the count the window starts with), oldest first.
    pub fn changes(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, u32)>, HistoryError> {
        let before: Option<(i64, u32)> = self
            .conn
            .query_row(
                "SELECT t, count FROM counts WHERE site = ?1 AND t < ?2 ORDER BY t DESC LIMIT 1",
                params![site, from_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t, count FROM counts WHERE site = ?1 AND t >= ?2 AND t <= ?3 ORDER BY t",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(params![site, from_ms, to_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.db(e))?;
        let mut out: Vec<(i64, u32)> = before.into_iter().collect();
        for row in rows {
            out.push(row.map_err(|e| self.db(e))?);
        }
        Ok(out)
    }

    /// The highest count of `site` since `from_ms` and when it was first
    /// reached; the count carried in from before `from_ms` counts too.
    pub fn peak_since(
        &self,
        site: &str,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<(u32, i64)>, HistoryError> {
        let changes = self.changes(site, from_ms, now_ms)?;
        Ok(changes.iter().map(|(t, c)| (*c, (*t).max(from_ms))).fold(
            None,
            |best: Option<(u32, i64)>, (c, t)| match best {
                Some((b, _)) if b >= c => best,
                _ => Some((c, t)),
            },
        ))
    }

    /// Fills the time before this app's first row in `[from_ms, …)` with a
    /// whosin server's per-minute history (while the app was not running),
    /// as one row per minute (its last value). Minutes the app recorded
    /// itself are left alone. Returns the rows written.
    pub fn fill(&self, site: &str, from_ms: i64, points: &[Point]) -> Result<usize, HistoryError> {
        let first_own: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(t) FROM counts WHERE site = ?1 AND t >= ?2",
                params![site, from_ms],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        let until = first_own.unwrap_or(i64::MAX);
        let mut n = 0;
        for p in points {
            let t = p.t * 1000;
            if t >= from_ms && t + 60_000 <= until {
                self.conn
                    .execute(
                        "INSERT INTO counts (site, t, count) VALUES (?1, ?2, ?3)",
                        params![site, t, p.peak],
                    )
                    .map_err(|e| self.db(e))?;
                if p.last != p.peak {
                    self.conn
                        .execute(
                            "INSERT INTO counts (site, t, count) VALUES (?1, ?2, ?3)",
                            params![site, t + 59_000, p.last],
                        )
                        .map_err(|e| self.db(e))?;
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A schema step that does not exist. The loop runs only up to
/// [`SCHEMA_VERSION`], so this is not reached; a new version added without
/// its step leaves the tables missing, which the tests above catch.
fn unreachable_step(v: i32) -> &'static str {
    tracing::error!("no migration step from history schema version {v}");
    ""
}

/// A whosin server's count history of `channel` (its page's unsigned
/// `/history.json`, served for the channels its auth endpoint signs); `None`
/// when the server has none to give (not a whosin server, an older one, or
/// unreachable), which is not an error: the gap just stays.
pub async fn server_history(
    endpoint: &whosin_client::Endpoint,
    channel: &str,
) -> Option<Vec<Point>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        points: Vec<Point>,
    }
    let scheme = if endpoint.tls { "https" } else { "http" };
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let url = format!(
        "{scheme}://{host}:{}{}/history.json",
        endpoint.port, endpoint.path
    );
    let answer = reqwest::Client::new()
        .get(url)
        .query(&[("channel", channel), ("app_key", endpoint.key.as_str())])
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body = answer.text().await.ok()?;
    serde_json::from_str::<Answer>(&body).ok().map(|a| a.points)
}

/// Per-minute points (peak and last of each minute with a change) from a
/// series of changes, for the chart; the first change may lie before the
/// window and only sets the starting count.
pub fn minute_points(changes: &[(i64, u32)]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    for &(t_ms, count) in changes {
        let t = t_ms.div_euclid(60_000) * 60;
        match out.last_mut() {
            Some(p) if p.t == t => {
                p.peak = p.peak.max(count);
                p.last = count;
            }
            _ => out.push(Point {
                t,
                peak: count,
                last: count,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn records_changes_only_and_reads_them_back_with_the_count_before() {
        let h = HistoryStore::in_memory().unwrap();
        assert_eq!(h.version().unwrap(), SCHEMA_VERSION);
        let t0 = 1_800_000_000_000;
        assert!(h.record("a", t0, 1).unwrap());
        assert!(!h.record("a", t0 + 1, 1).unwrap(), "unchanged: not written");
        assert!(h.record("a", t0 + MIN, 3).unwrap());
        assert!(h.record("b", t0 + MIN, 7).unwrap());
        assert!(h.record("a", t0 + 2 * MIN, 2).unwrap());
        assert_eq!(
            h.changes("a", t0 + MIN / 2, t0 + 10 * MIN).unwrap(),
            vec![(t0, 1), (t0 + MIN, 3), (t0 + 2 * MIN, 2)]
        );
        assert_eq!(
            h.peak_since("a", t0, t0 + 10 * MIN).unwrap(),
            Some((3, t0 + MIN))
        );
        assert_eq!(h.peak_since("c", t0, t0 + 10 * MIN).unwrap(), None);
    }

    #[test]
    fn old_rows_are_pruned() {
        let h = HistoryStore::in_memory().unwrap();
        let now = 1_800_000_000_000;
        let keep = KEEP.as_millis() as i64;
        h.record("a", now - keep - 1, 5).unwrap();
        h.record("a", now - keep + 1, 6).unwrap();
        assert_eq!(h.prune(now).unwrap(), 1);
        assert_eq!(h.changes("a", 0, now).unwrap(), vec![(now - keep + 1, 6)]);
    }

    #[test]
    fn a_file_is_migrated_once_and_a_newer_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("whosin-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("history.sqlite3");
        {
            let h = HistoryStore::open(&path).unwrap();
            h.record("a", 1, 2).unwrap();
        }
        let h = HistoryStore::open(&path).unwrap();
        assert_eq!(h.version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            h.changes("a", 0, 10).unwrap(),
            vec![(1, 2)],
            "kept across opens"
        );
        h.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(h);
        let err = HistoryStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("newer") && err.contains("update whosin"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_charts_points_come_from_a_known_series() {
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MIN;
        let changes = [
            (t0 - 5 * MIN, 1),
            (t0 + 1_000, 2),
            (t0 + 20_000, 5),
            (t0 + 40_000, 3),
            (t0 + MIN + 5, 4),
        ];
        assert_eq!(
            minute_points(&changes),
            vec![
                Point {
                    t: (t0 - 5 * MIN) / 1000,
                    peak: 1,
                    last: 1
                },
                Point {
                    t: t0 / 1000,
                    peak: 5,
                    last: 3
                },
                Point {
                    t: (t0 + MIN) / 1000,
                    peak: 4,
                    last: 4
                },
            ]
        );
    }

    #[test]
    fn a_servers_history_fills_only_the_time_before_the_apps_own_rows() {
        let h = HistoryStore::in_memory().unwrap();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MIN;
        h.record("a", t0 + 10 * MIN, 9).unwrap();
        let server = [
            Point {
                t: t0 / 1000,
                peak: 4,
                last: 2,
            },
            Point {
                t: (t0 + MIN) / 1000,
                peak: 3,
                last: 3,
            },
            Point {
                t: (t0 + 10 * MIN) / 1000,
                peak: 1,
                last: 1,
            },
        ];
        assert_eq!(h.fill("a", t0, &server).unwrap(), 2);
        assert_eq!(
            h.changes("a", t0, t0 + 20 * MIN).unwrap(),
            vec![(t0, 4), (t0 + 59_000, 2), (t0 + MIN, 3), (t0 + 10 * MIN, 9)]
        );
    }
}
