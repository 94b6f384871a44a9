//! User-supplied backbones through `backbone.import`, with real libtorch:
//! a TorchScript module and ResNet-18 weights in safetensors, and a file
//! that is neither.

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, TaskStatus};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind, Tensor, nn};

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    replay_model::register(&mut r);
    r
}

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let p =
        compile("t.yaml", yaml, &registry()).unwrap_or_else(|d| panic!("{}\n{yaml}", d.render()));
    let pl = plan(&p);
    scheduler::run(
        Arc::new(p),
        Arc::new(pl),
        store.clone(),
        RunOptions::default(),
    )
    .await
    .unwrap()
}

fn import(path: &Path, arch: &str) -> String {
    format!(
        "name: import\nstages:\n  bb:\n    uses: backbone.import\n    with: {{ path: \"{}\", arch: {arch}, size: 64 }}\n",
        path.display()
    )
}

async fn backbone_meta(store: &Store, r: &RunRecord) -> Value {
    let t = r.task("bb").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    store
        .get_manifest(&t.outputs["backbone"])
        .await
        .unwrap()
        .meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_torchscript_and_resnet18_and_refuses_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();

    // A TorchScript module: mean colour per frame, [B, 3, H, W] -> [B, 3].
    let script = dir.path().join("colour.pt");
    let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let m = tch::CModule::create_by_tracing("Colour", "forward", &[x], &mut |xs| {
        vec![xs[0].mean_dim(&[2i64, 3][..], false, Kind::Float)]
    })
    .unwrap();
    m.save(&script).unwrap();
    let r = run(&import(&script, "torchscript"), &store).await;
    assert_eq!(backbone_meta(&store, &r).await["dim"], 3);

    // torchvision's ResNet-18 without its final layer, as safetensors.
    let weights = dir.path().join("resnet18.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = tch::vision::resnet::resnet18_no_final_layer(&vs.root());
    vs.save(&weights).unwrap();
    let r = run(&import(&weights, "resnet18"), &store).await;
    assert_eq!(backbone_meta(&store, &r).await["dim"], 512);

    // Not a model: a clear error naming the file, and no panic.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let r = run(&import(&junk, "resnet18"), &store).await;
    let t = r.task("bb").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    let err = t.error.clone().unwrap();
    assert!(err.contains("junk.safetensors"), "{err}");
    let r = run(
        &import(&dir.path().join("missing.pt"), "torchscript"),
        &store,
    )
    .await;
    let err = r.task("bb").unwrap().error.clone().unwrap();
    assert!(
        err.contains("missing.pt") && err.contains("does not exist"),
        "{err}"
    );
}
