//! Feature extraction gives the same rows in the same order however it runs: one session
//! with every thread, or several single-threaded streams finishing out of order; with
//! unreadable files and cached rows mixed in.

mod common;
use common::shared;
use retrain::backbone::LoadedBackbone;
use retrain_features::{extract, FeatureCache, Session, Sessions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn streams_and_one_session_give_the_same_rows_in_file_order() {
    let backbone =
        LoadedBackbone::load("mobilenet_v2", Some(&shared("weights/mobilenet_v2-b0353104.pth")), true).unwrap();
    let model = backbone.feature_model().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.jpg");
    std::fs::write(&broken, b"\xff\xd8 not really").unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for class in ["ants", "bees"] {
        let mut f: Vec<PathBuf> = std::fs::read_dir(shared(&format!("data/hymenoptera/val/{class}")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        files.extend(f.into_iter().take(19));
    }
    files.insert(21, broken.clone());
    let g = backbone.geometry();
    let bar = indicatif::ProgressBar::hidden();
    let run = |threads: usize, cache: Option<&FeatureCache>, made: &AtomicUsize| {
        let mut s = Sessions::new(threads, |n| {
            made.fetch_add(1, Ordering::Relaxed);
            Session::new(&model, "mobilenet_v2", n)
        });
        extract(&mut s, &["features"], &files, g, Default::default(), cache, 8, &bar).unwrap()
    };

    let made = AtomicUsize::new(0);
    let one = run(1, None, &made);
    assert_eq!(made.load(Ordering::Relaxed), 1);
    assert_eq!(one.computed, 38);
    let made = AtomicUsize::new(0);
    let two = run(2, None, &made);
    assert_eq!(made.load(Ordering::Relaxed), 2, "39 files in batches of 8 run on two streams");
    assert_eq!(two.computed, 38);
    assert_eq!(one.features.len(), files.len());
    for (i, (a, b)) in one.features.iter().zip(&two.features).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.len(), 1280);
                // Both run each image on one thread: the same kernels, the same bits.
                assert_eq!(a, b, "{}: rows differ", files[i].display());
            }
            (Err(a), Err(b)) => {
                assert_eq!(files[i], broken);
                assert_eq!(a.to_string(), b.to_string());
            }
            _ => panic!("{}: one way read it, the other did not", files[i].display()),
        }
    }
    // Rows belong to their own files: neighbours differ.
    assert_ne!(one.features[0].as_ref().unwrap(), one.features[1].as_ref().unwrap());

    // Half of the files cached: they are read back, the rest computed, the order kept.
    let cache = FeatureCache::new(&tmp.path().join("cache"), "k", 1280);
    let half: Vec<PathBuf> = files.iter().step_by(2).cloned().collect();
    let mut s = Sessions::new(2, |n| Session::new(&model, "mobilenet_v2", n));
    extract(&mut s, &["features"], &half, g, Default::default(), Some(&cache), 8, &bar).unwrap();
    let made = AtomicUsize::new(0);
    let mixed = run(2, Some(&cache), &made);
    assert_eq!(mixed.computed, 18, "20 of 39 were cached; the unreadable one is among the rest");
    for (a, b) in one.features.iter().zip(&mixed.features) {
        assert_eq!(a.as_ref().ok(), b.as_ref().ok());
    }
    // Everything cached: no session is made at all.
    let made = AtomicUsize::new(0);
    let cached = run(2, Some(&cache), &made);
    assert_eq!((cached.computed, made.load(Ordering::Relaxed)), (0, 0));
}
