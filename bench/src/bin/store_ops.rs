//! Cost of single store operations on `fs://` (diagnostic).
use engine_core::store::Store;
use std::time::Instant;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open("fs://store", dir.path()).expect("store");
    rt.block_on(async {
        let n = 1000;
        let t = Instant::now();
        for i in 0..n {
            store
                .write(&format!("x/{i}.json"), vec![b'x'; 200])
                .await
                .unwrap();
        }
        println!(
            "write  {:.3} ms/op",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
        let t = Instant::now();
        for i in 0..n {
            store.exists(&format!("x/{i}.json")).await.unwrap();
        }
        println!(
            "exists {:.3} ms/op",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
        let t = Instant::now();
        for i in 0..n {
            store.read(&format!("x/{i}.json")).await.unwrap();
        }
        println!(
            "read   {:.3} ms/op",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
        let t = Instant::now();
        for i in 0..n {
            let _ = std::fs::read(dir.path().join(format!("store/x/{i}.json"))).unwrap();
        }
        println!(
            "std::fs::read {:.3} ms/op",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    });
}
