//! `--group`: each child's lines are kept apart while it runs and printed
//! together when its try ends, so children's lines never interleave (the
//! default, `--line-buffer`, prints each line as it comes).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::out::{Closed, Out};

/// Buffers per running child.
#[derive(Debug, Default)]
pub struct Group {
    open: HashMap<usize, (Out, Shared)>,
}

/// The bytes a child's [`Out`] wrote.
#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Group {
    /// Where child `top`'s output goes until it ends.
    pub fn out(&mut self, top: usize) -> &mut Out {
        &mut self
            .open
            .entry(top)
            .or_insert_with(|| {
                let shared = Shared::default();
                (Out::new(Box::new(shared.clone())), shared)
            })
            .0
    }

    /// Prints child `top`'s kept lines to `main`, in one piece.
    pub fn release(&mut self, top: usize, main: &mut Out) -> Result<(), Closed> {
        let Some((mut out, shared)) = self.open.remove(&top) else {
            return Ok(());
        };
        // Writing into memory cannot fail.
        let _ = out.flush();
        drop(out);
        let bytes = std::mem::take(&mut *shared.0.lock().unwrap_or_else(|p| p.into_inner()));
        main.write(&String::from_utf8_lossy(&bytes))
    }

    /// Prints what every unfinished child kept (the run is ending early).
    pub fn release_all(&mut self, main: &mut Out) -> Result<(), Closed> {
        let mut tops: Vec<usize> = self.open.keys().copied().collect();
        tops.sort_unstable();
        for top in tops {
            self.release(top, main)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_lines_come_out_together() {
        let sink = Shared::default();
        let mut main = Out::new(Box::new(sink.clone()));
        let mut g = Group::default();
        g.out(0).write("[a] 1\n").unwrap();
        g.out(1).write("[b] 1\n").unwrap();
        g.out(0).write("[a] 2\n").unwrap();
        g.release(1, &mut main).unwrap();
        g.release(0, &mut main).unwrap();
        main.flush().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "[b] 1\n[a] 1\n[a] 2\n");
    }
}
