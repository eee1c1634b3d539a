//! Sesame's fleet store on Redis: the adapter behind the engine's
//! [`FleetStore`] seam.
//!
//! The daemon's packet loop never waits on Redis. [`RedisFleet`] hands
//! every request to a thread over a bounded queue and returns at once; the
//! answers come back as [`FleetEvent`]s, with a byte on a socket pair whose
//! read end the loop polls ([`RedisFleet::wake_fd`]).
//!
//! - **Writer thread**: spends (`SET key gateway NX PX ttl`: atomic
//!   insert-if-absent on the primary) and publishes (sign, then `XADD` to
//!   the group's stream). Each command has the configured timeout; a
//!   spend that waited in the queue past it is answered `Unavailable`
//!   without being sent.
//! - **Reader thread**: `XREAD BLOCK` on the group's stream, verifies each
//!   entry against the allow-list of signers and passes on only
//!   [`VerifiedEntry`]s; on start it reads back `catch_up` into the past,
//!   so a restarted gateway installs the grants still valid. It also
//!   writes this gateway's heartbeat and reads the others'.
//!
//! Keys (all under `sesame:{GROUP}:`): `spent:HEX` (value: the gateway
//! that spent it), `entries` (the stream: fields `m`, the entry line, and
//! `s`, its signature in hex), `members` (a hash: gateway → last heartbeat,
//! unix ms).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Connection, IntoConnectionInfo, Value};
use sesame_core::fleet::{self, EntryError, Outgoing, Signers, SpendAnswer, VerifiedEntry};
use sesame_core::ports::{FleetSpend, FleetStore, Ticket};
use sesame_core::spa::IdentityKey;
use zeroize::Zeroizing;

/// Requests that may wait for the writer thread; more are refused at once
/// (a store that stopped answering must not grow a queue without bound).
const QUEUE: usize = 1024;

/// Events that may wait for the loop. A thread with more blocks (the
/// loop never does): a flood of entries from a compromised gateway slows
/// the reader down instead of growing memory.
const EVENTS: usize = 4096;

/// After a failed connection, requests are answered `Unavailable` without
/// a new attempt for this long (a blackholed store would otherwise cost
/// every knock a whole timeout).
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Entries kept in the group's stream (approximately).
const STREAM_MAXLEN: u64 = 100_000;

/// Spends `KEYS[1]` (value `ARGV[1]`, for `ARGV[2]` ms) and, only if no
/// one had, appends the signed entry (`ARGV[4]`, signature `ARGV[5]`) to
/// the stream `KEYS[2]` (trimmed to about `ARGV[3]`): 1, or the gateway
/// that spent it first. Atomic in Redis, and one round trip.
const SPEND_THEN_PUBLISH: &str = "\
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[4], 's', ARGV[5]) \
  return 1 \
end \
return redis.call('GET', KEYS[1])";

/// Entries read per `XREAD`.
const READ_BATCH: usize = 256;

/// How to reach the store and who this gateway is.
pub struct FleetConfig {
    /// `redis://HOST:PORT[/DB]` or `unix:///PATH`.
    pub url: String,
    /// Redis ACL user.
    pub user: Option<String>,
    /// Redis password.
    pub password: Option<Zeroizing<String>>,
    /// This gateway's name.
    pub name: String,
    /// The fleet's group.
    pub group: String,
    /// This gateway's signing key.
    pub key: IdentityKey,
    /// Whose entries are installed.
    pub signers: Signers,
    /// Per command.
    pub timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How far back a starting gateway reads entries.
    pub catch_up: Duration,
}

/// What the threads report to the loop.
#[derive(Debug)]
pub enum FleetEvent {
    /// A spend's answer, and how long the store took.
    Answer {
        /// The engine's ticket.
        ticket: Ticket,
        /// The answer.
        answer: SpendAnswer,
        /// Time from the request to the answer.
        took: Duration,
    },
    /// An entry another gateway signed, verified; `now_ms` is when it was
    /// read.
    Entry {
        /// The entry.
        entry: VerifiedEntry,
        /// Unix ms when it was read.
        now_ms: u64,
    },
    /// An entry that did not verify (forged, or from a gateway not on the
    /// allow-list): ignored.
    Rejected {
        /// Its stream id.
        id: String,
        /// Why.
        error: EntryError,
    },
    /// A grant or revoke could not be published.
    PublishFailed(String),
    /// The store became unreachable.
    Down(String),
    /// The store is reachable (again).
    Up,
}

/// What `sesame status` shows about the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The store answered the last command.
    pub up: bool,
    /// The last error, when down.
    pub last_error: Option<String>,
    /// Gateways and their last heartbeat (unix ms), as last read.
    pub members: Vec<(String, Option<u64>)>,
}

enum Job {
    Spend {
        ticket: Ticket,
        token: [u8; 32],
        ttl: Duration,
        queued: Instant,
        then_publish: Option<Outgoing>,
    },
    Publish(Outgoing),
}

/// The fleet store on Redis. Its threads start with
/// [`RedisFleet::start_threads`] (after the daemon dropped its privileges:
/// capabilities are per thread); requests made before wait in the queue.
/// Dropping it stops the threads.
pub struct RedisFleet {
    unstarted: Option<(Writer, Receiver<Job>, Reader)>,
    jobs: SyncSender<Job>,
    events: Receiver<FleetEvent>,
    wake: UnixStream,
    /// The threads' end of `wake`: [`RedisFleet::drain`] rings it itself
    /// when it leaves events for the next turn.
    rewake: Arc<UnixStream>,
    health: Arc<Mutex<Health>>,
    stop: Arc<AtomicBool>,
}

/// Why the fleet store cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The URL is not a Redis URL.
    #[error("fleet redis {url:?}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// The client's complaint.
        source: redis::RedisError,
    },
    /// The wake-up socket pair or a thread could not be made.
    #[error("fleet store: {0}")]
    Io(#[from] std::io::Error),
}

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Shared by both threads: how to connect, and where to report.
#[derive(Clone)]
struct Link {
    info: redis::ConnectionInfo,
    timeout: Duration,
    events: SyncSender<FleetEvent>,
    wake: Arc<UnixStream>,
    health: Arc<Mutex<Health>>,
}

impl Link {
    /// Hands `event` to the loop (waiting while [`EVENTS`] are pending)
    /// and wakes it.
    fn report(&self, event: FleetEvent) {
        if self.events.send(event).is_ok() {
            // A full socket buffer means the loop has wake-ups pending.
            let _ = (&*self.wake).write(&[1]);
        }
    }

    /// Records the store's state; reports a change.
    fn health(&self, result: Result<(), &str>) {
        let changed = {
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let was = h.up;
            h.up = result.is_ok();
            h.last_error = result.err().map(str::to_string);
            was != h.up
        };
        if changed {
            self.report(match result {
                Ok(()) => FleetEvent::Up,
                Err(e) => FleetEvent::Down(e.to_string()),
            });
        }
    }
}

/// One thread's connection, made on demand.
struct Conn {
    link: Link,
    con: Option<Connection>,
    failed_at: Option<(Instant, String)>,
    read_timeout: Duration,
}

impl Conn {
    fn get(&mut self) -> Result<&mut Connection, String> {
        if self.con.is_none() {
            if let Some((at, e)) = &self.failed_at {
                if at.elapsed() < RETRY_AFTER {
                    return Err(e.clone());
                }
            }
            let made = redis::Client::open(self.link.info.clone())
                .and_then(|c| c.get_connection_with_timeout(self.link.timeout))
                .and_then(|c| {
                    c.set_read_timeout(Some(self.read_timeout))?;
                    c.set_write_timeout(Some(self.link.timeout))?;
                    Ok(c)
                });
            match made {
                Ok(c) => {
                    self.con = Some(c);
                    self.failed_at = None;
                }
                Err(e) => {
                    let e = format!("cannot connect: {e}");
                    self.failed_at = Some((Instant::now(), e.clone()));
                    self.link.health(Err(&e));
                    return Err(e);
                }
            }
        }
        self.con.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Runs `cmd`; an error drops the connection (the next call
    /// reconnects) and marks the store down.
    fn run(&mut self, cmd: &redis::Cmd) -> Result<Value, String> {
        let con = self.get()?;
        match cmd.query::<Value>(con) {
            Ok(Value::ServerError(e)) => {
                let e = format!("{e:?}");
                self.link.health(Err(&e));
                Err(e)
            }
            Ok(v) => {
                self.link.health(Ok(()));
                Ok(v)
            }
            Err(e) => {
                let e = e.to_string();
                if e.contains("NOPERM") || e.contains("WRONGPASS") || e.contains("NOAUTH") {
                    // Keep the connection: the store is up but refuses us.
                } else {
                    self.con = None;
                    self.failed_at = Some((Instant::now(), e.clone()));
                }
                self.link.health(Err(&e));
                Err(e)
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex64(text: &[u8]) -> Option<[u8; 64]> {
    if text.len() != 128 {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Key names.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn spent(&self, token: &[u8; 32]) -> String {
        format!("{}spent:{}", self.prefix, hex(token))
    }
    fn entries(&self) -> String {
        format!("{}entries", self.prefix)
    }
    fn members(&self) -> String {
        format!("{}members", self.prefix)
    }
}

impl RedisFleet {
    /// Prepares the adapter; nothing is sent before the first request, so
    /// the daemon starts even when the store is down (fleet doors then
    /// follow `on_store_down`).
    pub fn new(config: FleetConfig) -> Result<RedisFleet, FleetError> {
        let url_error = |source| FleetError::Url {
            url: config.url.clone(),
            source,
        };
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(url_error)?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(user) = &config.user {
            redis_settings = redis_settings.set_username(user);
        }
        if let Some(password) = &config.password {
            redis_settings = redis_settings.set_password(password.as_str());
        }
        info = info.set_redis_settings(redis_settings);
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (events_tx, events) = mpsc::sync_channel(EVENTS);
        let (jobs, jobs_rx) = mpsc::sync_channel(QUEUE);
        let health = Arc::new(Mutex::new(Health {
            up: false,
            last_error: Some("not contacted yet".into()),
            members: config
                .signers
                .names()
                .into_iter()
                .map(|n| (n, None))
                .collect(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let rewake = Arc::new(wake_tx);
        let link = Link {
            info,
            timeout: config.timeout,
            events: events_tx,
            wake: Arc::clone(&rewake),
            health: Arc::clone(&health),
        };
        let keys = Keys {
            prefix: format!("sesame:{{{}}}:", config.group),
        };
        let writer = Writer {
            conn: Conn {
                link: link.clone(),
                con: None,
                failed_at: None,
                read_timeout: config.timeout,
            },
            keys: keys.clone(),
            name: config.name.clone(),
            group: config.group.clone(),
            key: config.key,
            timeout: config.timeout,
        };
        let block = config.heartbeat.min(Duration::from_secs(1));
        let reader = Reader {
            conn: Conn {
                link,
                con: None,
                failed_at: None,
                read_timeout: block + config.timeout + Duration::from_millis(500),
            },
            keys,
            own_marker: format!(" from={} ", config.name),
            name: config.name,
            group: config.group,
            signers: config.signers,
            heartbeat: config.heartbeat,
            block,
            catch_up: config.catch_up,
            stop: Arc::clone(&stop),
        };
        Ok(RedisFleet {
            unstarted: Some((writer, jobs_rx, reader)),
            jobs,
            events,
            wake: wake_rx,
            rewake,
            health,
            stop,
        })
    }

    /// Starts the writer and reader threads (once).
    pub fn start_threads(&mut self) -> Result<(), FleetError> {
        if let Some((writer, jobs, reader)) = self.unstarted.take() {
            std::thread::Builder::new()
                .name("fleet-writer".into())
                .spawn(move || writer.run(jobs))?;
            std::thread::Builder::new()
                .name("fleet-reader".into())
                .spawn(move || reader.run())?;
        }
        Ok(())
    }

    /// [`RedisFleet::new`] and [`RedisFleet::start_threads`].
    pub fn start(config: FleetConfig) -> Result<RedisFleet, FleetError> {
        let mut fleet = RedisFleet::new(config)?;
        fleet.start_threads()?;
        Ok(fleet)
    }

    /// Readable when events wait: poll it in the loop, then [`Self::drain`].
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// At most `max` of the events reported since the last call. When
    /// `max` came, [`Self::wake_fd`] stays readable, so the loop takes the
    /// rest on its next turn, after its packets: a flood of entries is
    /// taken in slices, never in one long stretch.
    pub fn drain(&mut self, max: usize) -> Vec<FleetEvent> {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let events: Vec<FleetEvent> = self.events.try_iter().take(max).collect();
        if events.len() == max {
            let _ = (&*self.rewake).write(&[1]);
        }
        events
    }

    /// The store's health and the members' heartbeats.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RedisFleet {
    fn drop(&mut self) {
        // The writer ends when the queue's sender goes; the reader within
        // one BLOCK.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FleetStore for RedisFleet {
    fn spend(
        &mut self,
        ticket: Ticket,
        token: [u8; 32],
        ttl: Duration,
        then_publish: Option<Outgoing>,
    ) -> FleetSpend {
        let job = Job::Spend {
            ticket,
            token,
            ttl,
            queued: Instant::now(),
            then_publish,
        };
        match self.jobs.try_send(job) {
            Ok(()) => FleetSpend::Pending,
            Err(TrySendError::Full(_)) => FleetSpend::Done(SpendAnswer::Unavailable(format!(
                "{QUEUE} requests already wait for the fleet store"
            ))),
            Err(TrySendError::Disconnected(_)) => FleetSpend::Done(SpendAnswer::Unavailable(
                "the fleet store's thread stopped".into(),
            )),
        }
    }

    fn publish(&mut self, outgoing: Outgoing) {
        // A full queue loses the entry: receivers then do not open (fail
        // closed); the accepting gateway's own grant stands.
        let _ = self.jobs.try_send(Job::Publish(outgoing));
    }
}

struct Writer {
    conn: Conn,
    keys: Keys,
    name: String,
    group: String,
    key: IdentityKey,
    timeout: Duration,
}

impl Writer {
    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Spend {
                    ticket,
                    token,
                    ttl,
                    queued,
                    then_publish,
                } => {
                    let answer = match queued.elapsed() {
                        waited if waited > self.timeout => SpendAnswer::Unavailable(format!(
                            "waited {waited:?} for earlier requests to the store"
                        )),
                        _ => self.spend(&token, ttl, then_publish),
                    };
                    self.conn.link.report(FleetEvent::Answer {
                        ticket,
                        answer,
                        took: queued.elapsed(),
                    });
                }
                Job::Publish(out) => {
                    if let Err(e) = self.publish(out) {
                        self.conn.link.report(FleetEvent::PublishFailed(e));
                    }
                }
            }
        }
    }

    fn spend(
        &mut self,
        token: &[u8; 32],
        ttl: Duration,
        then_publish: Option<Outgoing>,
    ) -> SpendAnswer {
        let key = self.keys.spent(token);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let reply = match then_publish {
            // One round trip, atomic: spend, and publish only if spent.
            Some(out) => {
                let (line, sig) = self.signed(out);
                let mut eval = redis::cmd("EVAL");
                eval.arg(SPEND_THEN_PUBLISH)
                    .arg(2)
                    .arg(&key)
                    .arg(self.keys.entries())
                    .arg(&self.name)
                    .arg(ttl_ms)
                    .arg(STREAM_MAXLEN)
                    .arg(&line)
                    .arg(hex(&sig));
                self.conn.run(&eval)
            }
            None => {
                let mut set = redis::cmd("SET");
                set.arg(&key)
                    .arg(&self.name)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms);
                self.conn.run(&set)
            }
        };
        match reply {
            Ok(Value::Okay) | Ok(Value::Int(1)) => SpendAnswer::Spent,
            Ok(Value::BulkString(by)) => SpendAnswer::SpentElsewhere {
                by: String::from_utf8_lossy(&by).into_owned(),
            },
            Ok(Value::Nil) => {
                let by = self
                    .conn
                    .run(redis::cmd("GET").arg(&key))
                    .ok()
                    .as_ref()
                    .and_then(text)
                    .unwrap_or_else(|| "?".into());
                SpendAnswer::SpentElsewhere { by }
            }
            Ok(other) => SpendAnswer::Unavailable(format!("unexpected reply to SET: {other:?}")),
            Err(e) => SpendAnswer::Unavailable(e),
        }
    }

    /// The entry line, stamped now, and its signature.
    fn signed(&self, out: Outgoing) -> (String, [u8; 64]) {
        let line = out.stamp(&self.name, unix_ms()).encode();
        let sig = fleet::sign(&self.key, &self.group, &line);
        (line, sig)
    }

    fn publish(&mut self, out: Outgoing) -> Result<(), String> {
        let (line, sig) = self.signed(out);
        let mut add = redis::cmd("XADD");
        add.arg(self.keys.entries())
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_MAXLEN)
            .arg("*")
            .arg("m")
            .arg(&line)
            .arg("s")
            .arg(hex(&sig));
        self.conn.run(&add).map(drop)
    }
}

struct Reader {
    conn: Conn,
    keys: Keys,
    name: String,
    /// ` from=NAME `: how this gateway's own entry lines read.
    own_marker: String,
    group: String,
    signers: Signers,
    heartbeat: Duration,
    block: Duration,
    catch_up: Duration,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(mut self) {
        // From `catch_up` ago on the first read (a restart installs the
        // grants still valid), then from the last entry seen.
        let mut last_id = format!(
            "{}-0",
            unix_ms().saturating_sub(self.catch_up.as_millis() as u64)
        );
        let mut next_beat = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_beat {
                self.beat();
                next_beat = Instant::now() + self.heartbeat;
            }
            let mut read = redis::cmd("XREAD");
            read.arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(self.block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(self.keys.entries())
                .arg(&last_id);
            match self.conn.run(&read) {
                Ok(reply) => {
                    for (id, fields) in stream_entries(&reply) {
                        self.entry(&id, &fields);
                        last_id = id;
                    }
                }
                Err(_) => std::thread::sleep(RETRY_AFTER.min(self.block)),
            }
        }
    }

    fn entry(&self, id: &str, fields: &[(String, Vec<u8>)]) {
        let field = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.as_slice())
        };
        // This gateway's own entries (or entries claiming to be) are never
        // installed here: skip them before paying for a verification.
        let own = self.own_marker.as_bytes();
        if field("m").is_some_and(|m| m.windows(own.len()).any(|w| w == own)) {
            return;
        }
        let verified = match (field("m"), field("s")) {
            (Some(m), Some(s)) => match (std::str::from_utf8(m), unhex64(s)) {
                (Ok(line), Some(sig)) => self.signers.verify(&self.group, line, &sig),
                _ => Err(EntryError::Malformed(
                    "not text, or no 64-byte signature".into(),
                )),
            },
            _ => Err(EntryError::Malformed("fields m and s missing".into())),
        };
        let event = match verified {
            Ok(entry) if entry.entry().from == self.name => return,
            Ok(entry) => FleetEvent::Entry {
                entry,
                now_ms: unix_ms(),
            },
            Err(error) => FleetEvent::Rejected {
                id: id.to_string(),
                error,
            },
        };
        self.conn.link.report(event);
    }

    /// Writes this gateway's heartbeat and reads everyone's.
    fn beat(&mut self) {
        let mut set = redis::cmd("HSET");
        set.arg(self.keys.members()).arg(&self.name).arg(unix_ms());
        if self.conn.run(&set).is_err() {
            return;
        }
        let Ok(Value::Array(flat)) = self
            .conn
            .run(redis::cmd("HGETALL").arg(self.keys.members()))
        else {
            return;
        };
        let seen: Vec<(String, u64)> = flat
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?.parse().ok()?)))
            .collect();
        let mut h = self
            .conn
            .link
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, at) in &mut h.members {
            *at = seen.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        }
    }
}

/// A stream entry: its id and its fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// `XREAD`'s reply, RESP2 or RESP3: `[[stream, [[id, [f, v, …]], …]]]`
/// (or a map of stream → entries); nil when nothing came.
fn stream_entries(reply: &Value) -> Vec<StreamEntry> {
    let streams: Vec<&Value> = match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.get(1),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(pair) = e else { continue };
            let (Some(id), Some(Value::Array(flat))) = (pair.first().and_then(text), pair.get(1))
            else {
                continue;
            };
            let fields = flat
                .chunks(2)
                .filter_map(|kv| match (kv.first().and_then(text), kv.get(1)) {
                    (Some(k), Some(Value::BulkString(v))) => Some((k, v.clone())),
                    _ => None,
                })
                .collect();
            out.push((id, fields));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_hex() {
        let sig = [0xabu8; 64];
        assert_eq!(unhex64(hex(&sig).as_bytes()), Some(sig));
        assert_eq!(unhex64(b"zz"), None);
        assert_eq!(unhex64(&[b'g'; 128]), None);
    }

    #[test]
    fn xread_replies_are_read_and_garbage_is_skipped() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            b("sesame:{edge}:entries"),
            Value::Array(vec![
                Value::Array(vec![
                    b("1-0"),
                    Value::Array(vec![b("m"), b("x"), b("s"), b("y")]),
                ]),
                Value::Int(3),
                Value::Array(vec![b("2-0")]),
            ]),
        ])]);
        let entries = stream_entries(&reply);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "1-0");
        assert_eq!(entries[0].1[0], ("m".to_string(), b"x".to_vec()));
        assert!(stream_entries(&Value::Nil).is_empty());
    }
}
