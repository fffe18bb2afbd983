//! What a `no_std` component needs from its crate: an allocator, the
//! canonical ABI's `cabi_realloc`, and a panic handler. Compiled only for
//! wasm without the `std` feature.
#![allow(unsafe_code, reason = "the wasm ABI glue is unsafe by nature")]

use alloc::alloc::{GlobalAlloc, Layout, alloc, handle_alloc_error, realloc};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of the bump arena.
const ARENA_SIZE: usize = 1 << 20;

/// The arena lives in `.bss`: part of the instance's initial memory, so
/// allocating from it never grows memory (a `memory.grow` costs the host an
/// `mprotect` now and a TLB shootdown when the slot is reset), and pages a
/// call never touches cost nothing.
#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: wasm32 components are single-threaded.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
/// Offset of the first free byte of the arena.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Offset of the most recent arena allocation (the one that can be freed
/// or grown in place).
static LAST: AtomicUsize = AtomicUsize::new(usize::MAX);

/// A bump arena first, dlmalloc (the allocator of Rust's own wasm std)
/// after it. Every call runs in a fresh instance, so never reusing freed
/// arena memory costs nothing: it is all thrown away at the end of the call.
/// Freeing or growing the latest block works in place, which covers the
/// common `Vec`/`String` growth pattern.
struct ArenaThenDlmalloc;

#[global_allocator]
static ALLOCATOR: ArenaThenDlmalloc = ArenaThenDlmalloc;

fn arena_base() -> usize {
    ARENA.0.get() as usize
}

fn in_arena(ptr: *mut u8) -> bool {
    let p = ptr as usize;
    p >= arena_base() && p < arena_base() + ARENA_SIZE
}

/// Bump-allocate `layout` from the arena, if it fits.
fn arena_alloc(layout: Layout) -> Option<*mut u8> {
    let base = arena_base();
    let next = NEXT.load(Ordering::Relaxed);
    let start = (base + next).checked_next_multiple_of(layout.align())? - base;
    let end = start.checked_add(layout.size())?;
    if end > ARENA_SIZE {
        return None;
    }
    NEXT.store(end, Ordering::Relaxed);
    LAST.store(start, Ordering::Relaxed);
    Some((base + start) as *mut u8)
}

// SAFETY: arena blocks are disjoint and aligned as asked; everything else
// is dlmalloc's.
unsafe impl GlobalAlloc for ArenaThenDlmalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match arena_alloc(layout) {
            Some(p) => p,
            // SAFETY: forwarded as is.
            None => unsafe { dlmalloc::GlobalDlmalloc.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_arena(ptr) {
            let offset = ptr as usize - arena_base();
            if LAST.load(Ordering::Relaxed) == offset {
                NEXT.store(offset, Ordering::Relaxed);
                LAST.store(usize::MAX, Ordering::Relaxed);
            }
        } else {
            // SAFETY: not an arena pointer, so dlmalloc's.
            unsafe { dlmalloc::GlobalDlmalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr) {
            // SAFETY: not an arena pointer, so dlmalloc's.
            return unsafe { dlmalloc::GlobalDlmalloc.realloc(ptr, layout, new_size) };
        }
        let offset = ptr as usize - arena_base();
        if LAST.load(Ordering::Relaxed) == offset && offset + new_size <= ARENA_SIZE {
            NEXT.store(offset + new_size, Ordering::Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the layout's alignment is valid; `new_size` is non-zero.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least `layout.size()` long.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
        }
        new
    }
}

/// The canonical ABI's allocation hook: the host calls it to copy
/// arguments (the ticket) into the guest's memory.
///
/// # Safety
/// Called by the component model glue with a pointer and layout it got from
/// a previous call (or null and zero).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let layout;
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI passes a power-of-two alignment.
        layout = unsafe { Layout::from_size_align_unchecked(new_len, align) };
        // SAFETY: `new_len` is non-zero.
        unsafe { alloc(layout) }
    } else {
        // SAFETY: the same layout the pointer was allocated with.
        layout = unsafe { Layout::from_size_align_unchecked(old_len, align) };
        // SAFETY: `old_ptr` came from this allocator with `layout`.
        unsafe { realloc(old_ptr, layout, new_len) }
    };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

/// Set while the panic handler runs: a panic while reporting a panic (say,
/// out of memory while formatting) traps at once instead of recursing.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Report the panic through the host log (so the host's error names it),
/// then trap.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        core::arch::wasm32::unreachable()
    }
    let message = alloc::format!("plugin panicked: {info}");
    crate::bindings::trigger::escalator::plugin::host::log(
        crate::bindings::trigger::escalator::plugin::host::LogLevel::Error,
        &message,
    );
    core::arch::wasm32::unreachable()
}
