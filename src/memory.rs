//! How the process's allocator hands memory back to the system.
//!
//! glibc's malloc serves a block above its mmap threshold (128 KiB at first) with a mapping of
//! its own and unmaps it when freed — but the first time such a block is freed it raises the
//! threshold to that block's size, and from then on blocks that large come from its heaps and
//! stay resident after they are freed. The 19 MiB an Argon2 hash needs is such a block: once a
//! hashing worker had freed one, every later buffer stayed in the heap. A fixed threshold keeps
//! every large block a mapping of its own, returned the moment it is freed.
//!
//! The rest of a burst (connection buffers, request bodies: many small blocks) is freed into
//! glibc's per-thread arenas, which keep the pages; [`release_free_memory`] gives back every
//! whole free page, and the server calls it once a burst is over.
//!
//! The start itself reads much of the binary that nothing reads again — the migrations, the
//! generation of the OpenAPI document, the Swagger UI bundle it is inlined into, the password
//! policy's word lists — and those pages stay resident (about 13 of the 23 MiB at ready,
//! measured). [`release_executable_pages`] drops the binary's read-only pages from the process's
//! resident set once the start is over; what the requests use is faulted back in from the
//! page cache at its first use (a minor fault, no disk read). Requests bring back more than they
//! run: each fault maps the whole page-cache folio around it, so after a mix of traffic about
//! 12 MiB of the binary was resident again (measured before a login flood, out of 23.7 MiB in
//! all). The server drops them again whenever it gives the allocator's free pages back, once a
//! burst of connections is over; what the next burst runs comes back as it runs.

#![allow(unsafe_code)]

/// Blocks from this size up are mappings of their own (the default before glibc adjusts it is
/// 128 KiB; nothing the request path allocates is near 1 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 1024 * 1024;

/// Sets the allocator up; call once, first thing in `main`, before other threads start.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before any other
    // thread exists and the value is within the documented range (0 to 32 MiB on 64-bit).
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 {
            eprintln!("warning: cannot set the allocator's mmap threshold");
        }
    }
}

/// Drops the read-only pages of the process's own executable (code, constants) from its
/// resident set: when the start is over, and after a burst. Only mappings none of whose pages was ever
/// written are touched: read-only (`r--p`, `r-xp`) and without a private copy of any page
/// (`Anonymous: 0 kB` in smaps) — the relocations the loader wrote before making a region
/// read-only (RELRO) would otherwise be lost. (Pages come back as they are used, a page-cache folio at a time:
/// measured, RSS at ready went from 23.5 to 20.6 MiB.)
pub fn release_executable_pages() {
    #[cfg(target_os = "linux")]
    {
        let (Ok(exe), Ok(smaps)) = (
            std::fs::read_link("/proc/self/exe"),
            std::fs::read_to_string("/proc/self/smaps"),
        ) else {
            return;
        };
        let exe = exe.to_string_lossy();
        let mut candidate: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else { continue };
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                // A mapping's header: "start-end perms offset dev inode path".
                let perms = fields.next();
                let path = fields.nth(3);
                candidate = (matches!(perms, Some("r--p" | "r-xp")) && path == Some(exe.as_ref()))
                    .then_some((start, end));
                continue;
            }
            if first == "Anonymous:"
                && let Some((start, end)) = candidate.take()
                && fields.next() == Some("0")
            {
                // SAFETY: the range is a read-only private mapping of the executable none of
                // whose pages has a private copy: MADV_DONTNEED only unmaps its pages from this
                // process, and any later access faults the same contents back in from the file.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                }
            }
        }
    }
}

/// Returns every whole free page of the allocator's heaps to the system; a few milliseconds
/// for a large heap, so call it when a burst is over, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; glibc locks each arena while it trims it.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn resident_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The executable's pages leave the resident set, and the code and constants still work
    /// after (relocated pointers included: a formatted string goes through vtables).
    #[test]
    fn the_executables_pages_leave_the_resident_set_and_come_back_on_use() {
        let before = resident_file_kib();
        release_executable_pages();
        let after = resident_file_kib();
        assert!(
            after < before,
            "resident file pages: {before} KiB, then {after} KiB"
        );
        let text = format!(
            "{:?}",
            (
                1u8,
                "two",
                vec![3.0f64],
                std::time::Duration::from_millis(4)
            )
        );
        assert_eq!(text, "(1, \"two\", [3.0], 4ms)");
        let parsed: serde_json::Value = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
        assert_eq!(parsed["a"][1], 2);
    }
}
