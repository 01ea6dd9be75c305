//! Giving memory back when a worker goes quiet. Two libc calls, each in its
//! own function with `#[allow(unsafe_code)]` (the workspace denies it; the
//! executors' `pre_exec` hooks are the only other places that allow it).
//!
//! Most of an idle worker's resident memory is its own program: start-up and
//! run code is scattered over several MiB of text, and the kernel maps up to
//! 64 KiB of already-cached pages around each page fault ("fault-around").
//! Those pages are clean copies of the executable in the page cache, so the
//! worker can unmap them when it goes quiet: the file's page cache keeps
//! them, and the next run maps them back with minor faults (a few tenths of
//! a millisecond, once). It also asks glibc to return free heap memory.

use std::ops::Range;

/// One mapping of `/proc/self/smaps`, with what trimming needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Address range.
    pub range: Range<usize>,
    /// Permissions as printed, e.g. `r-xp`.
    pub perms: String,
    /// `(device, inode)` of the mapped file; `None` for anonymous memory.
    pub file: Option<(String, u64)>,
    /// KiB of private copies in the mapping (`Anonymous` + `Swap`); `None`
    /// when the kernel did not report both.
    pub private_kib: Option<u64>,
}

impl Mapping {
    /// Unmapping its pages loses nothing: a private mapping that cannot be
    /// written and holds no private copy (anonymous or swapped) of any page,
    /// so every resident page is the file's own page-cache page.
    fn clean_read_only(&self) -> bool {
        let p = self.perms.as_bytes();
        self.file.is_some()
            && p.first() == Some(&b'r')
            && p.get(1) == Some(&b'-')
            && p.get(3) == Some(&b'p')
            && self.private_kib == Some(0)
    }
}

/// Parses the text of `/proc/<pid>/smaps`. Lines it does not understand are
/// skipped.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    // Anonymous and Swap of the current mapping, as they are read.
    let mut counts: (Option<u64>, Option<u64>) = (None, None);
    fn finish(maps: &mut [Mapping], counts: &mut (Option<u64>, Option<u64>)) {
        if let Some(m) = maps.last_mut() {
            m.private_kib = counts.0.zip(counts.1).map(|(a, s)| a + s);
        }
        *counts = (None, None);
    }
    for line in text.lines() {
        if let Some(mapping) = parse_header(line) {
            finish(&mut maps, &mut counts);
            maps.push(mapping);
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            counts.0 = kib(v);
        } else if let Some(v) = line.strip_prefix("Swap:") {
            counts.1 = kib(v);
        }
    }
    finish(&mut maps, &mut counts);
    maps
}

fn kib(value: &str) -> Option<u64> {
    value.split_whitespace().next()?.parse().ok()
}

/// `start-end perms offset dev inode [path]`.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let (lo, hi) = f.next()?.split_once('-')?;
    let range = usize::from_str_radix(lo, 16).ok()?..usize::from_str_radix(hi, 16).ok()?;
    let perms = f.next()?;
    if perms.len() != 4 {
        return None;
    }
    let _offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let dev = f.next()?;
    if !dev.contains(':') {
        return None;
    }
    let inode: u64 = f.next()?.parse().ok()?;
    Some(Mapping {
        range,
        perms: perms.to_owned(),
        file: (inode != 0).then(|| (dev.to_owned(), inode)),
        private_kib: None,
    })
}

/// The mappings of the file that holds `code` (an address in our own text)
/// whose pages can be unmapped without losing anything.
pub fn trimmable(maps: &[Mapping], code: usize) -> Vec<Range<usize>> {
    let Some(program) = maps
        .iter()
        .find(|m| m.range.contains(&code))
        .and_then(|m| m.file.as_ref())
    else {
        return Vec::new();
    };
    maps.iter()
        .filter(|m| m.file.as_ref() == Some(program) && m.clean_read_only())
        .map(|m| m.range.clone())
        .collect()
}

/// Gives memory back: free heap to the OS, then the program's clean pages.
/// Failures only cost the saving; they are logged at debug level.
pub fn trim() {
    #[cfg(target_os = "linux")]
    linux::trim();
}

/// Sets glibc's malloc up for the front door, before its threads start:
/// large buffers (a long answer, its JSON, a grown read buffer) are mapped
/// on their own and unmapped when freed, instead of the threshold rising
/// after the first such free so that later ones stay in the heap as free
/// but resident memory; and two arenas at most, so the runtime's threads do
/// not each keep their own heap of freed memory. Measured on a child that
/// streams one 2 MB line: peak resident memory about 10 MiB lower.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::tune_allocator();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ops::Range;

    /// Largest allocation served from the heap; larger ones are mapped.
    #[cfg(target_env = "gnu")]
    const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
    /// Most malloc arenas.
    #[cfg(target_env = "gnu")]
    const ARENA_MAX: libc::c_int = 2;

    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)]
    pub(super) fn tune_allocator() {
        // SAFETY: mallopt takes no pointers; it changes only how later
        // allocations are served, and is safe to call at any time (here
        // before any thread but the main one exists). A refused setting
        // (return 0) leaves glibc's default in place.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }

    pub(super) fn trim() {
        trim_heap();
        let maps = match std::fs::read_to_string("/proc/self/smaps") {
            Ok(text) => super::parse_smaps(&text),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read /proc/self/smaps; not trimming");
                return;
            }
        };
        // Any function of ours locates the program's text.
        let code = trim as fn() as usize;
        let mut bytes = 0;
        for range in super::trimmable(&maps, code) {
            match dont_need(&range) {
                Ok(()) => bytes += range.len(),
                Err(e) => tracing::debug!(error = %e, ?range, "madvise(MADV_DONTNEED) failed"),
            }
        }
        tracing::debug!(bytes, "unmapped clean program pages");
    }

    /// Unmaps the pages of `range`, which `trimmable` chose from
    /// `/proc/self/smaps`: page-aligned, one whole mapping of our executable.
    #[allow(unsafe_code)]
    fn dont_need(range: &Range<usize>) -> std::io::Result<()> {
        // SAFETY: MADV_DONTNEED only drops page-table entries; it never
        // unmaps the range, so no pointer into it dangles. On a private file
        // mapping the next access maps the file's page again, and the only
        // content that could be lost is a private copy of a page (written,
        // or swapped out). `trimmable` takes only mappings that cannot be
        // written (so no copy can appear; we never mprotect them) and that
        // `smaps` showed without a single anonymous or swapped page. So every
        // byte reads the same afterwards, exactly as when the kernel reclaims
        // clean file pages under memory pressure, which it may do at any time.
        // MADV_FREE, MADV_PAGEOUT (which would also evict the page cache the
        // next worker starts from) and any advice on anonymous memory are
        // deliberately not used.
        let rc = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.len(),
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Returns free heap memory to the OS. Rust's default allocator is the
    /// system one, glibc's malloc here, so this is the allocator's own call.
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)]
    fn trim_heap() {
        // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks
        // each arena); it releases only memory malloc holds as free.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    #[cfg(not(target_env = "gnu"))]
    fn trim_heap() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    // Abridged from a static worker: rodata, text, RELRO (with private copies
    // of relocated pages), data, heap, vdso.
    const SMAPS: &str = "\
00200000-003ad000 r--p 00000000 fe:00 1234 /opt/bamboo worker
Size:               1716 kB
Rss:                 888 kB
Anonymous:             0 kB
Swap:                  0 kB
003ad000-00926000 r-xp 001ac000 fe:00 1234 /opt/bamboo worker
Size:               5604 kB
Anonymous:             0 kB
Swap:                  0 kB
00926000-0092a000 r--p 00725000 fe:00 1234 /opt/bamboo worker
Anonymous:             8 kB
Swap:                  0 kB
0092a000-0092f000 rw-p 00728000 fe:00 1234 /opt/bamboo worker
Anonymous:            20 kB
Swap:                  0 kB
0092f000-00936000 r--p 00000000 fe:00 999 /usr/lib/locale/C.utf8/LC_CTYPE
Anonymous:             0 kB
Swap:                  0 kB
033e2000-03441000 rw-p 00000000 00:00 0 [heap]
Anonymous:           260 kB
Swap:                  0 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0
Anonymous:             0 kB
Swap:                  0 kB
7ffdee32a000-7ffdee34b000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
Swap:                  0 kB
";

    #[test]
    fn smaps_parses_ranges_files_and_private_pages() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 8);
        assert_eq!(maps[1].range, 0x3ad000..0x926000);
        assert_eq!(maps[1].perms, "r-xp");
        assert_eq!(maps[1].file, Some(("fe:00".to_owned(), 1234)));
        assert_eq!(maps[1].private_kib, Some(0));
        assert_eq!(maps[2].private_kib, Some(8));
        assert_eq!(maps[5].file, None);
        assert_eq!(maps[5].private_kib, Some(260));
    }

    #[test]
    fn only_clean_read_only_mappings_of_our_program_are_trimmed() {
        let maps = parse_smaps(SMAPS);
        // Not the RELRO copy, the data, another file, the heap or the vdso.
        assert_eq!(
            trimmable(&maps, 0x400000),
            vec![0x200000..0x3ad000, 0x3ad000..0x926000]
        );
        // An address in no file mapping finds no program.
        assert!(trimmable(&maps, 0x3400000).is_empty());
        assert!(trimmable(&maps, 0x1000).is_empty());
    }

    #[test]
    fn a_mapping_with_swapped_or_unreported_private_pages_is_kept() {
        let swapped = SMAPS.replacen(
            "Swap:                  0 kB",
            "Swap:                  4 kB",
            1,
        );
        assert_eq!(
            trimmable(&parse_smaps(&swapped), 0x400000),
            vec![0x3ad000..0x926000]
        );
        let unreported = SMAPS.replacen("Swap:                  0 kB\n", "", 2);
        assert!(trimmable(&parse_smaps(&unreported), 0x400000).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn trimming_a_live_process_keeps_code_and_constants_intact() {
        static TABLE: [u64; 4] = [3, 1, 4, 1];
        let text = String::from("still here");
        trim();
        assert_eq!(TABLE.iter().sum::<u64>(), 9);
        assert_eq!(text, "still here");
        // Our own text and rodata are among the trimmable mappings.
        let maps = parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap());
        let ranges = trimmable(&maps, trim as fn() as usize);
        assert!(ranges.iter().any(|r| r.contains(&(trim as fn() as usize))));
        trim();
    }
}
