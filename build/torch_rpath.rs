// Shared by the build scripts of the crates that link libtorch (`torch`
// feature): torch-sys publishes its lib dir (`links = "tch"`), and an rpath
// to it lets the binaries and tests run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
