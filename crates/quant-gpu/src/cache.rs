//! [`ModuleCache`]: loaded kernel modules by key, each built once; [`ContextModules`]: one
//! such cache per device context, shared by every backend of that context.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// One key's slot: filled once, under its own lock.
type Slot<M> = Arc<Mutex<Option<Arc<M>>>>;

/// Locks a mutex, taking the data of a poisoned one: the cache holds no invariant that a
/// panicking loader could break (a slot is either empty or holds a finished module).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cache of modules (or anything built once per key and shared).
///
/// Each key has its own slot and lock, so building one key's module does not block users of
/// another, and concurrent first users of one key build it once: the others wait for it. A
/// failed build leaves the slot empty; the next use tries again.
pub struct ModuleCache<K, M> {
    slots: Mutex<HashMap<K, Slot<M>>>,
}

impl<K, M> Default for ModuleCache<K, M> {
    fn default() -> Self {
        ModuleCache {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, M> std::fmt::Debug for ModuleCache<K, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCache")
            .field("keys", &lock(&self.slots).len())
            .finish()
    }
}

impl<K: Eq + Hash, M> ModuleCache<K, M> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The module for `key`, built with `build` if no earlier call has built it.
    pub fn get_or_try_init<E>(
        &self,
        key: K,
        build: impl FnOnce() -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        let slot = lock(&self.slots).entry(key).or_default().clone();
        let mut guard = lock(&slot);
        if let Some(m) = guard.as_ref() {
            return Ok(m.clone());
        }
        let m = Arc::new(build()?);
        *guard = Some(m.clone());
        Ok(m)
    }

    /// The module for `key`, if one has been built.
    pub fn get(&self, key: &K) -> Option<Arc<M>> {
        let slot = lock(&self.slots).get(key)?.clone();
        let guard = lock(&slot);
        guard.clone()
    }
}

/// The module caches of one vendor, one per scope (a device context and where its kernels come
/// from): every backend whose scope is equal gets the same [`ModuleCache`], so that backends
/// opened on several streams of one context build each format's module once.
///
/// The registry holds its caches weakly: a cache, and the modules in it, live as long as one
/// backend of its scope holds it. A scope that comes back after all its backends are gone (a
/// context destroyed and another made at the same address, say) gets a new, empty cache, never
/// modules of the context that went.
pub struct ContextModules<S, M> {
    scopes: Mutex<Vec<(S, Weak<FormatModules<M>>)>>,
}

/// The modules of one scope, by format name.
type FormatModules<M> = ModuleCache<&'static str, M>;

impl<S, M> ContextModules<S, M> {
    /// An empty registry (for a `static`).
    pub const fn new() -> Self {
        ContextModules {
            scopes: Mutex::new(Vec::new()),
        }
    }
}

impl<S, M> Default for ContextModules<S, M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, M> std::fmt::Debug for ContextModules<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = lock(&self.scopes)
            .iter()
            .filter(|(_, cache)| cache.strong_count() > 0)
            .count();
        f.debug_struct("ContextModules")
            .field("scopes", &live)
            .finish()
    }
}

impl<S: PartialEq + Clone, M> ContextModules<S, M> {
    /// The cache of `scope`: the one a live backend of that scope holds, else a new one.
    pub fn get(&self, scope: &S) -> Arc<ModuleCache<&'static str, M>> {
        let mut scopes = lock(&self.scopes);
        scopes.retain(|(_, cache)| cache.strong_count() > 0);
        if let Some(cache) = scopes
            .iter()
            .find(|(s, _)| s == scope)
            .and_then(|(_, cache)| cache.upgrade())
        {
            return cache;
        }
        let cache = Arc::new(ModuleCache::new());
        scopes.push((scope.clone(), Arc::downgrade(&cache)));
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_first_uses_build_once_per_key() {
        let cache: ModuleCache<(usize, &str), usize> = ModuleCache::new();
        let builds = AtomicUsize::new(0);
        let got: Vec<Arc<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        cache
                            .get_or_try_init((7, "fmt"), || {
                                std::thread::sleep(std::time::Duration::from_millis(10));
                                Ok::<_, ()>(builds.fetch_add(1, Ordering::SeqCst))
                            })
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        for m in &got {
            assert!(Arc::ptr_eq(m, &got[0]));
        }
        // Other keys get their own modules.
        let other = cache
            .get_or_try_init((8, "fmt"), || Ok::<_, ()>(100))
            .unwrap();
        assert_eq!(*other, 100);
        let other = cache
            .get_or_try_init((7, "other"), || Ok::<_, ()>(200))
            .unwrap();
        assert_eq!(*other, 200);
        assert!(Arc::ptr_eq(&cache.get(&(7, "fmt")).unwrap(), &got[0]));
        assert!(cache.get(&(9, "fmt")).is_none());
    }

    #[test]
    fn a_failed_build_is_retried() {
        let cache: ModuleCache<&str, u32> = ModuleCache::new();
        assert_eq!(cache.get_or_try_init("a", || Err("boom")), Err("boom"));
        assert!(cache.get(&"a").is_none());
        assert_eq!(*cache.get_or_try_init("a", || Ok::<_, ()>(3)).unwrap(), 3);
        // Once built, the builder is not called again.
        assert_eq!(
            *cache
                .get_or_try_init("a", || -> Result<u32, ()> { unreachable!() })
                .unwrap(),
            3
        );
    }

    #[test]
    fn one_cache_per_live_scope() {
        let reg: ContextModules<(u32, &str), u32> = ContextModules::new();
        let a = reg.get(&(1, "nvrtc"));
        assert!(Arc::ptr_eq(&a, &reg.get(&(1, "nvrtc"))));
        assert!(!Arc::ptr_eq(&a, &reg.get(&(2, "nvrtc"))));
        assert!(!Arc::ptr_eq(&a, &reg.get(&(1, "dir"))));
        a.get_or_try_init("q4_k", || Ok::<_, ()>(7)).unwrap();
        assert_eq!(reg.get(&(1, "nvrtc")).get(&"q4_k").as_deref(), Some(&7));
        // Once no backend holds it, the scope starts afresh.
        drop(a);
        assert!(reg.get(&(1, "nvrtc")).get(&"q4_k").is_none());
        assert_eq!(format!("{reg:?}"), "ContextModules { scopes: 0 }");
    }

    #[test]
    fn a_panicking_build_does_not_poison_the_cache() {
        let cache: ModuleCache<&str, u32> = ModuleCache::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = cache.get_or_try_init("a", || -> Result<u32, ()> { panic!("loader bug") });
        }));
        assert!(r.is_err());
        assert_eq!(*cache.get_or_try_init("a", || Ok::<_, ()>(1)).unwrap(), 1);
    }
}
