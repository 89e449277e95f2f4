/// jemalloc serves the binary's allocations on Linux. glibc's malloc gives each thread
/// that finds the others' arenas busy an arena of its own (up to eight per core) and keeps
/// what is freed in each: a storm of 100,000 alerts over 10,000 subscriptions left the
/// server at 160–175 MB resident with jemalloc's defaults at 140–150, and faster
/// (docs/performance.md, "Resident memory in the storm").
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: a background thread returns freed pages to
/// the system after a second (the default waits ten, in the allocating threads). The
/// `_RJEM_MALLOC_CONF` environment variable still overrides them.
#[cfg(target_os = "linux")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static std::ffi::CStr> =
    Some(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0");

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = tellify::cli::Cli::parse_for_terminal();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tellify::cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
