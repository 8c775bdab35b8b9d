//! The embedded sink: one `<Object>.ndjson` file per object, appended and fsynced per page.
//!
//! A process killed mid-write can leave a torn last line; opening a file cuts it off, which
//! is safe because the page it belonged to was never checkpointed and will be delivered
//! again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Delivery, SinkError};

pub struct NdjsonSink {
    dir: PathBuf,
    files: HashMap<String, Arc<Mutex<File>>>,
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

    fn file(&mut self, object: &str) -> Result<Arc<Mutex<File>>, SinkError> {
        if let Some(file) = self.files.get(object) {
            return Ok(file.clone());
        }
        let path = self.path(object);
        let io = |source| SinkError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        cut_torn_tail(&mut file).map_err(io)?;
        let file = Arc::new(Mutex::new(file));
        self.files.insert(object.to_owned(), file.clone());
        Ok(file)
    }

    pub async fn deliver(
        &mut self,
        object: &str,
        deliveries: &[Delivery],
    ) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(deliveries.len() * 512);
        for d in deliveries {
            serde_json::to_writer(&mut buf, d)?;
            buf.push(b'\n');
        }
        let file = self.file(object)?;
        let path = self.path(object);
        // fsync blocks for milliseconds; keep it off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&buf)?;
            file.sync_data()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        written.map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })
    }
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
