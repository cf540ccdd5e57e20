//! Builds the Go-built test peers up front (`.ci/run` runs it before the
//! tests, so the build's time shows as its own step): today the real
//! `kube-apiserver` of [`vip_testkit::apiserver::binary`]. Prints each
//! binary's path; exits 1 with the reason when one cannot be built.

fn main() {
    let started = std::time::Instant::now();
    match vip_testkit::apiserver::binary::kube_apiserver() {
        Ok(path) => println!(
            "kube-apiserver: {} ({:.1} s)",
            path.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("vip-build-fixtures: {e}");
            std::process::exit(1);
        }
    }
}
