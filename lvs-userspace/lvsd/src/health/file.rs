//! keepalived's FILE_CHECK and its track_file (check_file.c,
//! trackers/track_file.c): a number in a file decides whether the real
//! server is up and how its weight moves, and the file is read again
//! whenever it changes. As keepalived, lvsd watches the file's directory
//! with inotify for the file being written and closed, moved in or out, or
//! deleted (a file that is gone reads as 0).

use std::{
    ffi::OsString,
    fs::OpenOptions,
    io::{self, Read},
    os::{fd::AsFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::{io::Interest, net::UnixDatagram};

use super::condition::Shift;
use lvs_state::health::FileCheck;

/// keepalived reads at most this much of the file.
const READ_MAX: usize = 127;

/// What keepalived's `process_track_file` reads from `path`: the number at
/// its start as C's `strtol(buf, NULL, 0)` reads it (decimal, `0x` hex or
/// `0` octal, after blanks, with a sign), and 0 when the file cannot be
/// read, is empty or starts with no number. `None` for a number outside
/// -2147483648..=2147483648, which keepalived ignores, keeping the last.
pub fn read_value(path: &Path) -> Option<i64> {
    let mut buf = [0; READ_MAX];
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut file| file.read(&mut buf));
    match read {
        Ok(n) if n > 0 => strtol(&buf[..n])
            .filter(|v| (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1).contains(v)),
        _ => Some(0),
    }
}

/// C's `strtol` with base 0; `None` where it would set ERANGE.
fn strtol(text: &[u8]) -> Option<i64> {
    let mut rest = text;
    while let [b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r', tail @ ..] = rest {
        rest = tail;
    }
    let negative = match rest {
        [b'-', tail @ ..] => {
            rest = tail;
            true
        }
        [b'+', tail @ ..] => {
            rest = tail;
            false
        }
        _ => false,
    };
    let radix = match rest {
        [b'0', b'x' | b'X', next, ..] if next.is_ascii_hexdigit() => {
            rest = &rest[2..];
            16
        }
        [b'0', ..] => 8,
        _ => 10,
    };
    let mut magnitude: u64 = 0;
    for &b in rest {
        let Some(digit) = char::from(b).to_digit(radix) else {
            break;
        };
        magnitude = magnitude
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// keepalived's `update_track_file_status` for one real server: with
/// weight 0 the value only says up (0) or down (non-zero; `reverse`: the
/// other way round); otherwise value × weight (negated with `reverse`),
/// held to the range of a C int, moves the weight, and the lowest int is
/// the FAULT state: down. `Err` says why the server is down.
pub fn verdict(value: i64, spec: &FileCheck) -> Result<Option<Shift>, String> {
    let path = &spec.path;
    if spec.weight == 0 {
        let down = (value != 0) != spec.reverse;
        return match (down, spec.reverse) {
            (false, _) => Ok(None),
            (true, false) => Err(format!("{path} holds {value}: not 0 is down")),
            (true, true) => Err(format!("{path} holds 0: 0 is down (reverse)")),
        };
    }
    let sign = if spec.reverse { -1 } else { 1 };
    let status =
        (value * i64::from(spec.weight) * sign).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if status == i64::from(i32::MIN) {
        return Err(format!(
            "{path} holds {value}: times weight {} is at or below -2147483648, keepalived's FAULT",
            i64::from(spec.weight) * sign
        ));
    }
    Ok(Some(Shift::Add(status)))
}

/// An inotify watch on a file's directory.
pub struct Watch {
    inotify: Inotify,
    /// A duplicate of the inotify descriptor, registered with tokio for its
    /// readiness only (it is never read as a socket): the safe way to wait
    /// on a descriptor, lvsd having no `unsafe` for `AsyncFd`.
    ready: UnixDatagram,
    name: OsString,
}

impl Watch {
    /// Watch `path`'s directory for what keepalived watches: a file
    /// written and closed, deleted, or moved in or out.
    pub fn new(path: &Path) -> io::Result<Watch> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .to_os_string();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let events =
            AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVE;
        inotify.add_watch(&dir, events).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", dir.display()))
        })?;
        let dup = inotify.as_fd().try_clone_to_owned()?;
        let ready = UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(dup))?;
        Ok(Watch {
            inotify,
            ready,
            name,
        })
    }

    /// Wait until the file changes.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            self.ready.readable().await?;
            let events = self.ready.try_io(Interest::READABLE, || {
                self.inotify.read_events().map_err(io::Error::from)
            });
            match events {
                Ok(events) => {
                    if events
                        .iter()
                        .any(|e| e.name.as_deref() == Some(self.name.as_os_str()))
                    {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn numbers_read_as_strtol_reads_them() {
        for (text, value) in [
            (&b"42\n"[..], Some(42)),
            (b"  -7 apples", Some(-7)),
            (b"+3", Some(3)),
            (b"0x1F", Some(31)),
            (b"010", Some(8)),
            (b"08", Some(0)),
            (b"0x", Some(0)),
            (b"none", Some(0)),
            (b"", Some(0)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"99999999999999999999", None),
        ] {
            assert_eq!(strtol(text), value, "{:?}", String::from_utf8_lossy(text));
        }
    }

    fn spec(path: &str, weight: i32, reverse: bool) -> FileCheck {
        FileCheck {
            path: path.into(),
            weight,
            reverse,
        }
    }

    #[test]
    fn the_value_decides_as_keepalived_decides() {
        let status = spec("/run/st", 0, false);
        assert_eq!(verdict(0, &status), Ok(None));
        assert_eq!(
            verdict(3, &status),
            Err("/run/st holds 3: not 0 is down".into())
        );
        let reversed = spec("/run/st", 0, true);
        assert_eq!(verdict(5, &reversed), Ok(None));
        assert_eq!(
            verdict(0, &reversed),
            Err("/run/st holds 0: 0 is down (reverse)".into())
        );
        let weighed = spec("/run/w", 10, false);
        assert_eq!(verdict(3, &weighed), Ok(Some(Shift::Add(30))));
        assert_eq!(verdict(-3, &weighed), Ok(Some(Shift::Add(-30))));
        assert_eq!(
            verdict(-3, &spec("/run/w", 10, true)),
            Ok(Some(Shift::Add(30)))
        );
        // Held to an int: the top stays a weight, the bottom is FAULT.
        assert_eq!(
            verdict(1 << 30, &weighed),
            Ok(Some(Shift::Add(i64::from(i32::MAX))))
        );
        assert!(verdict(-(1 << 30), &weighed).is_err());
        assert!(verdict(i64::from(i32::MIN), &spec("/run/w", 1, false)).is_err());
        assert_eq!(
            verdict(i64::from(i32::MIN) + 1, &spec("/run/w", 1, false)),
            Ok(Some(Shift::Add(i64::from(i32::MIN) + 1)))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_change_is_seen_and_read() {
        let dir = std::env::temp_dir().join(format!("lvs-file-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weight");
        std::fs::write(&path, "5\n").unwrap();
        assert_eq!(read_value(&path), Some(5));
        let mut watch = Watch::new(&path).unwrap();
        // Another file in the directory is not ours.
        std::fs::write(dir.join("other"), "1").unwrap();
        std::fs::write(&path, "-2\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_value(&path), Some(-2));
        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_value(&path), Some(0));
        // Out of an int's range: ignored.
        std::fs::write(&path, "4294967296").unwrap();
        assert_eq!(read_value(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
