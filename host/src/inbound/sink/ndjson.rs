//! The embedded sink: one `<Object>.ndjson` file per object, appended and fsynced per page.
//!
//! A process killed mid-write can leave a torn last line; opening a file cuts it off, which
//! is safe because the page it belonged to was never checkpointed and will be delivered
//! again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Deliveries, SinkError};

pub struct NdjsonSink {
    dir: PathBuf,
    files: HashMap<String, File>,
}

impl NdjsonSink {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(NdjsonSink {
            dir: dir.to_owned(),
            files: HashMap::new(),
        })
    }

    /// The file `object`'s records go to.
    pub fn path(&self, object: &str) -> PathBuf {
        self.dir.join(format!("{object}.ndjson"))
    }

    fn file(&mut self, object: &str, path: &Path) -> Result<&mut File, std::io::Error> {
        if !self.files.contains_key(object) {
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)?;
            cut_torn_tail(&mut file)?;
            self.files.insert(object.to_owned(), file);
        }
        self.files
            .get_mut(object)
            .ok_or_else(|| std::io::Error::other("the file was just opened"))
    }

    /// The object's file length now: what a checkpoint records so that a resumed backfill
    /// can cut away what pages past it wrote.
    pub fn len(&mut self, object: &str) -> Result<u64, SinkError> {
        crate::blocking::in_place(|| {
            let path = self.path(object);
            self.file(object, &path)
                .and_then(|file| file.metadata())
                .map(|meta| meta.len())
                .map_err(|source| SinkError::Io {
                    path: path.display().to_string(),
                    source,
                })
        })
    }

    /// Cuts the object's file back to `len` bytes (it never grows it): the lines past it
    /// were written for pages whose checkpoint never committed, and are delivered again.
    pub fn cut(&mut self, object: &str, len: u64) -> Result<(), SinkError> {
        crate::blocking::in_place(|| {
            let path = self.path(object);
            let cut = self.file(object, &path).and_then(|file| {
                let now = file.metadata()?.len();
                if now > len {
                    tracing::info!(
                        object,
                        bytes = now - len,
                        "cutting lines written past the last checkpoint; their rows are read again"
                    );
                    file.set_len(len)?;
                    file.sync_data()?;
                }
                Ok(())
            });
            cut.map_err(|source| SinkError::Io {
                path: path.display().to_string(),
                source,
            })
        })
    }

    pub async fn deliver(
        &mut self,
        object: &str,
        deliveries: &Deliveries,
    ) -> Result<(), SinkError> {
        // Opening the file, writing and fsync are blocking work: not on an async worker's
        // time. The page was encoded with the plugin call, off the async workers too.
        crate::blocking::in_place(|| {
            let buf = deliveries.ndjson();
            let path = self.path(object);
            let written = self.file(object, &path).and_then(|file| {
                file.write_all(buf)?;
                file.sync_data()?;
                release_cached(file, buf.len() as u64);
                Ok(())
            });
            written.map_err(|source| {
                // A failed write may have left part of a line: the next delivery opens the
                // file again, which cuts it, instead of appending after it.
                self.files.remove(object);
                SinkError::Io {
                    path: path.display().to_string(),
                    source,
                }
            })
        })
    }
}

/// Lets the kernel drop the page cache of the `len` bytes just written and made durable.
///
/// The host never reads a page back, and a backfill writes gigabytes: kept, they would push
/// every other installation's store pages out of the cache for data only the product's
/// reader wants, once. Released at once, the next page's write reuses the same memory
/// instead of claiming more; on a VM whose freed memory goes back to the hypervisor, memory
/// claimed anew costs a fault per page on first touch (the kernel's copy into fresh pages
/// was 14% of a Bulk backfill's CPU in `inbound_throughput`, 2–4% once released). Advice
/// only: the page is durable already, so a failure to advise loses nothing and fails
/// nothing.
fn release_cached(file: &mut File, len: u64) {
    #[cfg(target_os = "linux")]
    {
        let advised = file.stream_position().and_then(|end| {
            let start = end.saturating_sub(len);
            match std::num::NonZeroU64::new(end - start) {
                Some(len) => {
                    rustix::fs::fadvise(&*file, start, Some(len), rustix::fs::Advice::DontNeed)
                        .map_err(std::io::Error::from)
                }
                None => Ok(()),
            }
        });
        if let Err(error) = advised {
            tracing::debug!(%error, "the sink's written pages stay cached");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

/// Truncates the file after its last newline.
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Lines are a few KiB at most; read back until a newline shows up.
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                tracing::warn!(cut = len - keep, "cutting a torn last line left by a crash");
                file.set_len(keep)?;
            }
            return Ok(());
        }
        if start == 0 {
            tracing::warn!(cut = len, "cutting a torn only line left by a crash");
            return file.set_len(0);
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_drops_what_was_written_past_the_length_and_never_grows() {
        let dir = tempfile::tempdir().expect("dir");
        let mut sink = NdjsonSink::open(dir.path()).expect("sink");
        std::fs::write(sink.path("Account"), b"{\"a\":1}\n{\"b\":2}\n").expect("write");
        assert_eq!(sink.len("Account").expect("len"), 16);
        sink.cut("Account", 8).expect("cut");
        assert_eq!(
            std::fs::read(sink.path("Account")).expect("read"),
            b"{\"a\":1}\n"
        );
        sink.cut("Account", 100)
            .expect("a longer length changes nothing");
        assert_eq!(sink.len("Account").expect("len"), 8);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_whole_lines_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("Account.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").expect("write");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        cut_torn_tail(&mut file).expect("cut");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"b\":2}\n"
        );
        std::fs::write(&path, b"{\"c\":").expect("write");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        cut_torn_tail(&mut file).expect("cut");
        assert_eq!(std::fs::read(&path).expect("read"), b"");
    }
}
