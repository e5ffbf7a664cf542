//! Running a decoder in a child process under a time and memory bound, so
//! that a crash or a hang in it fails one file, never the indexer or the
//! server that asked.
//!
//! The child is a `fork` of the calling process without `exec`: it already
//! holds the file's bytes and the decoders, so nothing has to be found on
//! disk, shipped beside the binary or kept at the same version, and the
//! library, its tests, the CLI and the server all isolate alike. The child
//! sets its own bounds (`RLIMIT_AS`: its address space may grow by
//! [`memory_budget`]; `RLIMIT_CPU`; death with its parent), decodes, writes
//! the 8-bit RGB result (or a refusal) into a pipe and leaves with `_exit`.
//! The parent reads the pipe with a deadline of
//! [`ImageLimits::max_decode_seconds`]; past it the child is killed.
//! Anything but a whole answer (a signal, an early exit, a short answer)
//! is an [`EmbedError::DecoderFailed`] naming the file.
//!
//! Forking a multi-threaded process leaves the child with one thread; it
//! uses no lock another thread could have held (no logging, no rayon, no
//! environment): its allocator is the process's (glibc's, which re-arms its
//! locks across `fork`, or mimalloc's thread-local heaps), and should it
//! ever block anyway, the deadline kills it like any hung decoder.
//!
//! For tests of the containment itself, `IMGSIM_DECODE_FAULT=ACTION:SUFFIX`
//! makes the child misbehave on files whose name ends with `SUFFIX`:
//! `crash` (SIGSEGV), `hang` (sleeps forever), `hog` (allocates with
//! `malloc`, as the C decoders do, until its memory bound stops it). It is
//! read by the parent, per decode.
//!
//! The address-space bound stops what maps new memory: the C libraries'
//! `malloc` (glibc's). The Rust allocator of the process (mimalloc in the
//! `imgsim` binary) may hand out address space it reserved before the fork,
//! so jxl-oxide, the one Rust decoder run here, is bounded by its own
//! allocation tracker instead ([`ImageLimits::max_decoded_bytes`]).

use std::ffi::c_int;
use std::path::Path;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::error::{EmbedError, Result};
use crate::format::Format;
use crate::load::ImageLimits;

/// The environment variable of the fault hook (see the module's docs).
pub const FAULT_ENV: &str = "IMGSIM_DECODE_FAULT";

/// Why a decoder refused a file, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Declared or decoded size over a limit.
    TooLarge(String),
    /// Damaged or truncated data.
    Decode(String),
    /// A variant of the format the library does not decode.
    Unsupported(String),
}

impl Refusal {
    fn tag(&self) -> u8 {
        match self {
            Refusal::TooLarge(_) => 1,
            Refusal::Decode(_) => 2,
            Refusal::Unsupported(_) => 3,
        }
    }

    fn reason(&self) -> &str {
        match self {
            Refusal::TooLarge(r) | Refusal::Decode(r) | Refusal::Unsupported(r) => r,
        }
    }

    pub(crate) fn into_error(self, path: &Path) -> EmbedError {
        let path = path.to_path_buf();
        match self {
            Refusal::TooLarge(reason) => EmbedError::TooLarge { path, reason },
            Refusal::Decode(reason) => EmbedError::Decode { path, reason },
            Refusal::Unsupported(reason) => EmbedError::Unsupported { path, reason },
        }
    }
}

/// Refuses `w × h` before decoding when it exceeds the pixel limits, or
/// when `bytes_per_pixel` (the decoder's buffers per pixel) plus the RGB8
/// result exceed the allocation limit: the messages are the other formats'.
pub(crate) fn check_declared(
    w: u64,
    h: u64,
    bytes_per_pixel: u64,
    limits: &ImageLimits,
) -> std::result::Result<(), Refusal> {
    if w == 0 || h == 0 {
        return Err(Refusal::Decode(format!("image has no pixels ({w} × {h})")));
    }
    if w > u64::from(limits.max_width) || h > u64::from(limits.max_height) {
        return Err(Refusal::TooLarge(format!(
            "{w} × {h} exceeds the {} × {} limit",
            limits.max_width, limits.max_height
        )));
    }
    let need = w.saturating_mul(h).saturating_mul(bytes_per_pixel + 3);
    if need > limits.max_decoded_bytes {
        return Err(Refusal::TooLarge(format!(
            "{w} × {h} needs {need} bytes to decode, over the {} byte limit",
            limits.max_decoded_bytes
        )));
    }
    Ok(())
}

/// How much the child's address space may grow past the parent's at the
/// fork: twice the allocation limit (the decoder's buffers and the RGB8
/// result), plus 256 MiB for the libraries' code, tables and thread stacks.
pub fn memory_budget(limits: &ImageLimits) -> u64 {
    limits
        .max_decoded_bytes
        .saturating_mul(2)
        .saturating_add(256 << 20)
}

/// A fault to inject in the child (testing the containment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Crash,
    Hang,
    Hog,
}

/// The fault [`FAULT_ENV`] asks for on the file `name`, if any.
fn fault_for(name: &Path) -> Option<Fault> {
    let spec = std::env::var(FAULT_ENV).ok()?;
    let (action, suffix) = spec.split_once(':')?;
    if suffix.is_empty() || !name.to_string_lossy().ends_with(suffix) {
        return None;
    }
    match action {
        "crash" => Some(Fault::Crash),
        "hang" => Some(Fault::Hang),
        "hog" => Some(Fault::Hog),
        _ => None,
    }
}

/// Decodes `bytes` (the file `name`, of format `format`) with `decode` in a
/// child process (see the module's docs).
pub(crate) fn decode_apart(
    format: Format,
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
    decode: fn(&[u8], &ImageLimits) -> std::result::Result<RgbImage, Refusal>,
) -> Result<RgbImage> {
    let failed = |reason: String| EmbedError::DecoderFailed {
        path: name.to_path_buf(),
        format: format.label(),
        reason,
    };
    let fault = fault_for(name);
    let address_space = current_address_space().saturating_add(memory_budget(limits));
    let seconds = u64::from(limits.max_decode_seconds.max(1));
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(failed(format!(
            "cannot make a pipe to a decoder process: {}",
            std::io::Error::last_os_error()
        )));
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: the child only runs `child`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: both descriptors are ours and open.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(failed(format!("cannot start a decoder process: {e}")));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe {
            child(
                write_fd,
                read_fd,
                bytes,
                limits,
                decode,
                fault,
                address_space,
                seconds,
            )
        }
    }
    // SAFETY: the write end is the child's now.
    unsafe { libc::close(write_fd) };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let answer = read_answer(read_fd, deadline, limits);
    // SAFETY: ours, open.
    unsafe { libc::close(read_fd) };
    if matches!(answer, Answer::TimedOut) {
        // SAFETY: `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = reap(pid);
    match answer {
        Answer::Image(img) => Ok(img),
        Answer::Refused(r) => Err(r.into_error(name)),
        Answer::TimedOut => Err(failed(format!(
            "took longer than {seconds} s (limits.max_decode_seconds) and was stopped"
        ))),
        Answer::Invalid(what) => Err(failed(what)),
        Answer::Incomplete => Err(failed(match status {
            Some(s) if libc::WIFSIGNALED(s) => {
                let sig = libc::WTERMSIG(s);
                format!(
                    "its process was killed by signal {sig} ({}){}",
                    signal_name(sig),
                    if sig == libc::SIGABRT || sig == libc::SIGKILL {
                        format!(
                            "; over its memory bound ({} MiB) perhaps",
                            memory_budget(limits) >> 20
                        )
                    } else {
                        String::new()
                    }
                )
            }
            Some(s) if libc::WIFEXITED(s) => format!(
                "its process exited with status {} without an answer",
                libc::WEXITSTATUS(s)
            ),
            _ => "its process ended without an answer".to_string(),
        })),
    }
}

fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV, a crash",
        libc::SIGABRT => "SIGABRT, an abort",
        libc::SIGBUS => "SIGBUS, a crash",
        libc::SIGILL => "SIGILL, a crash",
        libc::SIGFPE => "SIGFPE, a crash",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU, over its CPU time",
        _ => "a signal",
    }
}

/// The process's address space now, bytes (`VmSize`).
fn current_address_space() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

/// The child: bounds itself, decodes, answers, leaves.
///
/// # Safety
/// To be called only in the child of a `fork`, once; never returns.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    write_fd: c_int,
    read_fd: c_int,
    bytes: &[u8],
    limits: &ImageLimits,
    decode: fn(&[u8], &ImageLimits) -> std::result::Result<RgbImage, Refusal>,
    fault: Option<Fault>,
    address_space: u64,
    seconds: u64,
) -> ! {
    // SAFETY (whole block): plain system calls on our own process.
    unsafe {
        libc::close(read_fd);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // glibc's malloc: one arena for all the decoder's threads, so that
        // the address-space bound is not spent on per-thread reservations.
        #[cfg(target_env = "gnu")]
        libc::mallopt(libc::M_ARENA_MAX, 1);
        let cpu = libc::rlimit {
            rlim_cur: seconds + 1,
            rlim_max: seconds + 2,
        };
        libc::setrlimit(libc::RLIMIT_CPU, &cpu);
        if address_space > 0 {
            let mem = libc::rlimit {
                rlim_cur: address_space,
                rlim_max: address_space,
            };
            libc::setrlimit(libc::RLIMIT_AS, &mem);
        }
    }
    match fault {
        // SAFETY: raising a signal on ourselves. (Rust's own SIGSEGV
        // handler, for stack overflows, would let a raised one return; a
        // real fault in C code ends as the default action does.)
        Some(Fault::Crash) => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        },
        Some(Fault::Hang) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        // As a C decoder would: malloc until it fails, then abort (what
        // libheif's C++ does with an uncaught std::bad_alloc).
        Some(Fault::Hog) => loop {
            // SAFETY: a fresh allocation, filled within its size.
            unsafe {
                let p = libc::malloc(64 << 20);
                if p.is_null() {
                    libc::abort();
                }
                libc::memset(p, 1, 64 << 20);
                // Kept: the compiler may not drop an unused allocation.
                std::hint::black_box(p);
            }
        },
        None => {}
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes, limits)))
        .unwrap_or_else(|_| Err(Refusal::Decode("the decoder panicked".into())));
    let mut msg = Vec::new();
    let pixels: &[u8] = match &result {
        Ok(img) => {
            msg.push(0u8);
            msg.extend_from_slice(&img.width().to_le_bytes());
            msg.extend_from_slice(&img.height().to_le_bytes());
            img.as_raw()
        }
        Err(r) => {
            let text = r.reason().as_bytes();
            let text = &text[..text.len().min(4096)];
            msg.push(r.tag());
            msg.extend_from_slice(&(text.len() as u32).to_le_bytes());
            msg.extend_from_slice(&0u32.to_le_bytes());
            msg.extend_from_slice(text);
            &[]
        }
    };
    let ok = write_all(write_fd, &msg) && write_all(write_fd, pixels);
    // SAFETY: leaving without running the parent's destructors or atexit.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

fn write_all(fd: c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// What the parent made of the child's answer.
enum Answer {
    Image(RgbImage),
    Refused(Refusal),
    TimedOut,
    /// The pipe closed before a whole answer.
    Incomplete,
    /// An answer that cannot be (sizes over the limits).
    Invalid(String),
}

/// Reads exactly `buf.len()` bytes by `deadline`: `Ok(true)` when read,
/// `Ok(false)` at end of data, `Err(())` past the deadline.
fn read_exact_by(fd: c_int, buf: &mut [u8], deadline: Instant) -> std::result::Result<bool, ()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = c_int::try_from(left.as_millis().max(1)).unwrap_or(c_int::MAX);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Ok(false);
        }
        if r == 0 {
            continue; // the deadline is checked above
        }
        // SAFETY: the tail of `buf` is valid for writing.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Ok(false);
        }
        if n == 0 {
            return Ok(false);
        }
        got += n as usize;
    }
    Ok(true)
}

fn read_answer(fd: c_int, deadline: Instant, limits: &ImageLimits) -> Answer {
    let mut head = [0u8; 9];
    match read_exact_by(fd, &mut head, deadline) {
        Err(()) => return Answer::TimedOut,
        Ok(false) => return Answer::Incomplete,
        Ok(true) => {}
    }
    let a = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let b = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    if head[0] == 0 {
        let (w, h) = (a, b);
        let len = u64::from(w) * u64::from(h) * 3;
        if w == 0 || h == 0 || len > limits.max_decoded_bytes {
            return Answer::Invalid(format!("it answered an impossible size, {w} × {h}"));
        }
        let mut px = vec![0u8; len as usize];
        return match read_exact_by(fd, &mut px, deadline) {
            Err(()) => Answer::TimedOut,
            Ok(false) => Answer::Incomplete,
            Ok(true) => match RgbImage::from_raw(w, h, px) {
                Some(img) => Answer::Image(img),
                None => Answer::Invalid(format!("it answered an impossible size, {w} × {h}")),
            },
        };
    }
    if a > 4096 {
        return Answer::Invalid(format!("it answered a {a}-byte message"));
    }
    let mut text = vec![0u8; a as usize];
    match read_exact_by(fd, &mut text, deadline) {
        Err(()) => return Answer::TimedOut,
        Ok(false) => return Answer::Incomplete,
        Ok(true) => {}
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    match head[0] {
        1 => Answer::Refused(Refusal::TooLarge(text)),
        2 => Answer::Refused(Refusal::Decode(text)),
        3 => Answer::Refused(Refusal::Unsupported(text)),
        t => Answer::Invalid(format!("it answered an unknown tag {t}")),
    }
}

/// Waits for the child; its wait status, when there is one to have.
fn reap(pid: libc::pid_t) -> Option<c_int> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(bytes: &[u8], limits: &ImageLimits) -> std::result::Result<RgbImage, Refusal> {
        match bytes.first() {
            Some(&v) => {
                check_declared(3, 2, 3, limits)?;
                Ok(RgbImage::from_pixel(3, 2, image::Rgb([v, v, v])))
            }
            None => Err(Refusal::Decode("no data".into())),
        }
    }

    fn stuck(_: &[u8], _: &ImageLimits) -> std::result::Result<RgbImage, Refusal> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    fn crash(_: &[u8], _: &ImageLimits) -> std::result::Result<RgbImage, Refusal> {
        std::process::abort()
    }

    fn greedy(_: &[u8], limits: &ImageLimits) -> std::result::Result<RgbImage, Refusal> {
        // Asks for twice its budget: the address-space bound must stop it.
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        while (hoard.len() as u64) * (64 << 20) < memory_budget(limits) * 2 {
            hoard.push(vec![7u8; 64 << 20]);
        }
        Ok(RgbImage::new(1, std::hint::black_box(hoard).len() as u32))
    }

    fn panics(_: &[u8], _: &ImageLimits) -> std::result::Result<RgbImage, Refusal> {
        panic!("decoder bug")
    }

    #[test]
    fn answers_and_refusals_cross_the_process_boundary() {
        let limits = ImageLimits::default();
        let name = Path::new("a.avif");
        let img = decode_apart(Format::Avif, &[9], name, &limits, grey).unwrap();
        assert_eq!(img, RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9])));
        let err = decode_apart(Format::Avif, &[], name, &limits, grey).unwrap_err();
        assert!(matches!(err, EmbedError::Decode { .. }), "{err}");
        assert_eq!(err.to_string(), "a.avif: cannot decode: no data");
        let tight = ImageLimits {
            max_width: 2,
            ..limits
        };
        let err = decode_apart(Format::Avif, &[9], name, &tight, grey).unwrap_err();
        assert!(matches!(err, EmbedError::TooLarge { .. }), "{err}");
        let err = decode_apart(Format::Avif, &[9], name, &limits, panics).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
    }

    #[test]
    fn a_crash_a_hang_and_a_memory_hog_fail_one_file_only() {
        let limits = ImageLimits {
            max_decode_seconds: 1,
            max_decoded_bytes: 64 << 20,
            ..ImageLimits::default()
        };
        let name = Path::new("x.heic");
        let err = decode_apart(Format::Heif, &[1], name, &limits, crash).unwrap_err();
        assert!(matches!(err, EmbedError::DecoderFailed { .. }), "{err}");
        assert!(err.to_string().contains("SIGABRT"), "{err}");
        assert!(err
            .to_string()
            .starts_with("x.heic: the HEIC/HEIF decoder failed"));
        let t = Instant::now();
        let err = decode_apart(Format::Heif, &[1], name, &limits, stuck).unwrap_err();
        assert!(err.to_string().contains("longer than 1 s"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // A slow machine may take a while to touch the memory.
        let patient = ImageLimits {
            max_decode_seconds: 20,
            ..limits
        };
        let err = decode_apart(Format::Heif, &[1], name, &patient, greedy).unwrap_err();
        assert!(matches!(err, EmbedError::DecoderFailed { .. }), "{err}");
        assert!(err.to_string().contains("memory bound"), "{err}");
        // And the process goes on decoding.
        let img = decode_apart(Format::Heif, &[5], name, &limits, grey).unwrap();
        assert_eq!(img.dimensions(), (3, 2));
    }
}
