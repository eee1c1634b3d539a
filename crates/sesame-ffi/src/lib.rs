//! A C ABI over Sesame's portable client, for apps that knock (SSH
//! clients, VPN front-ends, home-automation hubs) in any language with a C
//! FFI: C and C++, Swift, Kotlin/Java (JNA or JNI), Python (ctypes), Go.
//!
//! Every function takes the client config's path (NULL: the default
//! `~/.config/sesame/client.toml`), a server name and a door name, as
//! NUL-terminated UTF-8. It returns a [`SesameStatus`]; on failure
//! [`sesame_last_error`] gives the message, which names the file, server,
//! door or item at fault. Nothing here keeps state between calls but that
//! message (one per thread), so the functions may be called from any
//! thread.
//!
//! The header is `include/sesame.h`, made by cbindgen; the example
//! `examples/knock.c` shows the whole API.
//!
//! This is an adapter: the only `unsafe` is the reading and writing of the
//! caller's pointers, each block with its `SAFETY` argument.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sesame_client::knock::Family;
use sesame_client::plan::Plan;
use sesame_client::profile::{self, ClientConfig, ClientDoor};
use sesame_core::spa::NONCE_LEN;

/// What a call did.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SesameStatus {
    /// It worked.
    Ok = 0,
    /// A pointer was NULL where it may not be, or a string not UTF-8.
    InvalidArgument = 1,
    /// The config, a key, the door or the network failed; see
    /// `sesame_last_error`.
    Failed = 2,
    /// The output buffer is too small; `*written` holds the size needed.
    BufferTooSmall = 3,
}

/// The largest packet any door makes (an fwknop packet with every field;
/// SPA packets are under 200 bytes): a buffer this large always fits.
pub const SESAME_MAX_PACKET: usize = 1500;

/// Length of the SPA header nonce `sesame_spa_packet_with` takes.
pub const SESAME_SPA_NONCE_LEN: usize = 24;
// Written as a number so that cbindgen can put it in the header.
const _: () = assert!(SESAME_SPA_NONCE_LEN == NONCE_LEN);

/// Length of the payload nonce `sesame_spa_packet_with` takes.
pub const SESAME_SPA_PAYLOAD_NONCE_LEN: usize = 16;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: impl Into<String>) {
    let text = message.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).unwrap_or_default());
}

/// Runs `f`, turning its error (and a panic) into a status and the
/// thread's last error.
fn guarded(f: impl FnOnce() -> Result<(), (SesameStatus, String)>) -> SesameStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            SesameStatus::Ok
        }
        Ok(Err((status, message))) => {
            set_error(message);
            status
        }
        Err(_) => {
            set_error("internal error (a bug in sesame): please report it");
            SesameStatus::Failed
        }
    }
}

fn invalid(what: &str) -> (SesameStatus, String) {
    (SesameStatus::InvalidArgument, what.to_string())
}

fn failed(e: impl std::fmt::Display) -> (SesameStatus, String) {
    (SesameStatus::Failed, e.to_string())
}

/// A C string argument; NULL gives `None`.
fn text<'a>(name: &str, ptr: *const c_char) -> Result<Option<&'a str>, (SesameStatus, String)> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a valid NUL-terminated string (the ABI's
    // contract, stated in the header) that outlives this call.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|_| invalid(&format!("{name} is not UTF-8")))
}

fn required<'a>(name: &str, ptr: *const c_char) -> Result<&'a str, (SesameStatus, String)> {
    text(name, ptr)?.ok_or_else(|| invalid(&format!("{name} is NULL")))
}

fn load_config(path: *const c_char) -> Result<ClientConfig, (SesameStatus, String)> {
    let path = match text("config", path)? {
        Some(p) => PathBuf::from(p),
        None => profile::default_path()
            .ok_or_else(|| failed("no config given and no home directory for the default"))?,
    };
    ClientConfig::load(&path).map_err(failed)
}

fn unix_now() -> Result<u64, (SesameStatus, String)> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| failed("the system clock is before 1970"))
}

/// Copies `bytes` to the caller's buffer.
fn write_out(
    bytes: &[u8],
    out: *mut u8,
    capacity: usize,
    written: *mut usize,
) -> Result<(), (SesameStatus, String)> {
    if written.is_null() {
        return Err(invalid("written is NULL"));
    }
    // SAFETY: `written` is non-NULL and points to a size_t the caller owns.
    unsafe { written.write(bytes.len()) };
    if bytes.len() > capacity {
        return Err((
            SesameStatus::BufferTooSmall,
            format!(
                "the packet has {} bytes, the buffer {capacity}",
                bytes.len()
            ),
        ));
    }
    if out.is_null() {
        return Err(invalid("out is NULL"));
    }
    // SAFETY: `out` is non-NULL and the caller guarantees `capacity` bytes
    // there; `bytes.len() <= capacity` was checked above; the regions
    // cannot overlap (`bytes` is ours).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    Ok(())
}

/// Knocks `door` of `server`: whatever the door's type (plain sequence,
/// TOTP, Sesame SPA, fwknop), made fresh and sent from ordinary sockets.
/// A knock is never answered: confirm by connecting to the service.
///
/// # Safety
/// `config` (may be NULL), `server` and `door` must be NUL-terminated
/// strings valid for the call.
#[no_mangle]
pub unsafe extern "C" fn sesame_knock(
    config: *const c_char,
    server: *const c_char,
    door: *const c_char,
) -> SesameStatus {
    guarded(|| {
        let (server, door) = (required("server", server)?, required("door", door)?);
        let cfg = load_config(config)?;
        let plan = Plan::for_door(&cfg, server, door, Family::Any, unix_now()?).map_err(failed)?;
        plan.send().map_err(failed)
    })
}

/// Makes the packet of a single-packet door (SPA or fwknop) with fresh
/// randomness, without sending it: for apps that send with their own
/// sockets. Writes it to `out` (`capacity` bytes) and its length to
/// `*written`; with `SESAME_STATUS_BUFFER_TOO_SMALL`, `*written` is the
/// size needed. The packet goes to UDP port `*port` of the server's host.
///
/// # Safety
/// String arguments as for `sesame_knock`; `out` must have `capacity`
/// writable bytes; `written` and `port` must be valid pointers.
#[no_mangle]
pub unsafe extern "C" fn sesame_packet(
    config: *const c_char,
    server: *const c_char,
    door: *const c_char,
    out: *mut u8,
    capacity: usize,
    written: *mut usize,
    port: *mut u16,
) -> SesameStatus {
    guarded(|| {
        let (server, door) = (required("server", server)?, required("door", door)?);
        if port.is_null() {
            return Err(invalid("port is NULL"));
        }
        let cfg = load_config(config)?;
        match Plan::for_door(&cfg, server, door, Family::Any, unix_now()?).map_err(failed)? {
            Plan::Datagram { dest, bytes } => {
                // SAFETY: `port` is non-NULL and points to a uint16_t the
                // caller owns.
                unsafe { port.write(dest.port()) };
                write_out(&bytes, out, capacity, written)
            }
            Plan::Sequence { .. } => Err(failed(format!(
                "door {door:?} of server {server:?} is a knock sequence, not a single packet: use sesame_knock"
            ))),
        }
    })
}

/// The SPA packet of a symmetric-mode SPA `door` at `unix_secs`, with the
/// caller's nonces: the same bytes on every platform. For tests and for
/// checking a port of the client against this one; never send a packet
/// whose nonces are not fresh random bytes (a repeated nonce is refused
/// as a replay, and a predictable one helps an attacker).
///
/// # Safety
/// String arguments as for `sesame_knock`; `payload_nonce` must point to
/// `SESAME_SPA_PAYLOAD_NONCE_LEN` bytes and `nonce` to
/// `SESAME_SPA_NONCE_LEN`; `out`, `capacity` and `written` as for
/// `sesame_packet`.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // a C signature: flat by design
pub unsafe extern "C" fn sesame_spa_packet_with(
    config: *const c_char,
    server: *const c_char,
    door: *const c_char,
    unix_secs: u64,
    payload_nonce: *const u8,
    nonce: *const u8,
    out: *mut u8,
    capacity: usize,
    written: *mut usize,
) -> SesameStatus {
    guarded(|| {
        let (server_name, door_name) = (required("server", server)?, required("door", door)?);
        if payload_nonce.is_null() || nonce.is_null() {
            return Err(invalid("a nonce is NULL"));
        }
        let mut payload_bytes = [0u8; SESAME_SPA_PAYLOAD_NONCE_LEN];
        let mut nonce_bytes = [0u8; SESAME_SPA_NONCE_LEN];
        // SAFETY: both are non-NULL and the caller guarantees their
        // lengths (the header's constants); we copy into our own arrays.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload_nonce,
                payload_bytes.as_mut_ptr(),
                payload_bytes.len(),
            );
            std::ptr::copy_nonoverlapping(nonce, nonce_bytes.as_mut_ptr(), nonce_bytes.len());
        }
        let cfg = load_config(config)?;
        let (_, client_door) = cfg.door(server_name, door_name).map_err(failed)?;
        let ClientDoor::Spa(spa) = client_door else {
            return Err(failed(format!(
                "door {door_name:?} of server {server_name:?} is a {} door, not SPA",
                client_door.type_name()
            )));
        };
        let bytes = Plan::spa_with(spa, unix_secs, payload_bytes, nonce_bytes).map_err(failed)?;
        write_out(&bytes, out, capacity, written)
    })
}

/// The message of this thread's last failed call ("" after a success).
/// Valid until the thread's next call into this library; never NULL.
#[no_mangle]
pub extern "C" fn sesame_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// This library's version, as "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn sesame_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
