//! Loading one model across two GPUs: whole layers placed in proportion to free memory, each
//! device's share loaded at the same time, every tensor on its device equal to a single-device
//! load. Needs two GPUs: with `QUANTFORGE_GPU_TESTS=1` on a one-GPU machine it prints SKIPPED.

use quantforge::core::{GgmlType, OutputDType};
use quantforge::gpu::{Backend, DeviceSpec};
use quantforge::loader::{GgufLoader, LoadAs, PipelineOptions, Placement};
use quantforge_tests::{test_gpu, write_random_model};

#[test]
fn a_model_split_over_two_gpus_equals_a_single_gpu_load() {
    let Some(first) = test_gpu("two_gpus") else {
        return;
    };
    let kind = first.info().kind;
    let count = quantforge::device::count(kind).unwrap_or(0);
    if count < 2 {
        eprintln!("SKIPPED: GPU test two_gpus needs two {kind} devices, found {count}");
        return;
    }
    let backends =
        quantforge::device::open_all(&[DeviceSpec::Gpu(kind, 0), DeviceSpec::Gpu(kind, 1)])
            .unwrap();
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layers.gguf");
    let q4k = GgmlType::from_name("Q4_K").unwrap();
    let q6k = GgmlType::from_name("Q6_K").unwrap();
    let names: Vec<(String, String)> = (0..8)
        .map(|l| {
            (
                format!("blk.{l}.attn_q.weight"),
                format!("blk.{l}.ffn_down.weight"),
            )
        })
        .collect();
    let mut tensors = vec![("token_embd.weight", q4k, 4096, 64)];
    for (a, f) in &names {
        tensors.push((a.as_str(), q4k, 4096, 32));
        tensors.push((f.as_str(), q6k, 4096, 32));
    }
    tensors.push(("output.weight", q6k, 4096, 64));
    write_random_model(&path, &tensors);

    for as_ in [LoadAs::Values(OutputDType::F16), LoadAs::Native] {
        let loader = GgufLoader::open(&path).unwrap();
        let mem: Vec<_> = refs.iter().map(|b| b.mem_info().unwrap()).collect();
        let placement = Placement::plan(loader.file(), &mem, as_).unwrap();
        assert!(placement.devices.iter().all(|d| !d.layers.is_empty()));
        let opts = PipelineOptions {
            slot_bytes: 1 << 20,
            ..PipelineOptions::default()
        };
        let shares = loader
            .load_placed(&refs, &placement, as_, &opts, &|_| {})
            .unwrap();
        assert_eq!(shares.len(), 2);

        let single = GgufLoader::open(&path).unwrap();
        let whole = single.load_with(refs[0], as_, &opts, &mut |_| {}).unwrap();
        for (d, share) in placement.devices.iter().enumerate() {
            for &i in &share.tensors {
                let t = &loader.file().tensor_at(i).unwrap();
                let dt = shares[d].get(&t.name).expect("on its device");
                assert_eq!(dt.buffer.device(), (kind, d));
                let want = whole.get(&t.name).unwrap();
                assert_eq!(
                    dt.download(refs[d]).unwrap(),
                    want.download(refs[0]).unwrap(),
                    "{} on device {d}",
                    t.name
                );
            }
        }
    }
}
