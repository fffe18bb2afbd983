//! What a `no_std` component needs from its crate: an allocator, the
//! canonical ABI's `cabi_realloc`, and a panic handler. Compiled only for
//! wasm without the `std` feature.
#![allow(unsafe_code, reason = "the wasm ABI glue is unsafe by nature")]

use alloc::alloc::{Layout, alloc, handle_alloc_error, realloc};
use core::sync::atomic::{AtomicBool, Ordering};

/// dlmalloc, the allocator Rust's own wasm std uses.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

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
