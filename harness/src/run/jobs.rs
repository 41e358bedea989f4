//! Scenarios side by side on the local backend (pure): how many workers the machine holds,
//! and which scenarios go together. Each worker is a lab of its own (PKI, browser,
//! kube-apiserver, Kanidm); scenarios that share a Kanidm state stay together so their
//! Kanidm and tokens are reused.

use crate::scenario::LoadedScenario;

/// What one worker costs at its peak, measured: up to three kube-apiservers (the current
/// one and those started ahead) of ~470 MB each with Go's collector held off until 512 MiB
/// of heap, etcd, kanidmd, chromedriver and Chromium; with room to spare.
pub const MEMORY_PER_WORKER: u64 = 2_500 << 20;

/// The concurrency the machine can hold: two workers per core (a local lab waits about
/// half of its time: token caches, Kanidm restarts, API server starts), as many as memory
/// allows, never more than there are chains of scenarios. Returns the number and why.
///
/// Measured on 2 cores, the suite (28 scenarios): 2 workers 99.9 s, 4 workers 81.9 s
/// (paired, 2 pairs), 6 workers 114.7 s (their set-up is CPU-bound).
pub fn default_jobs(cores: usize, available_memory: Option<u64>, groups: usize) -> (usize, String) {
    default_jobs_over(cores, cores, available_memory, groups, MEMORY_PER_WORKER)
}

/// [`default_jobs`] for units that need `per_unit` bytes each and may number `extra` more
/// than the cores (kind clusters mostly wait).
pub fn default_jobs_each(
    cores: usize,
    available_memory: Option<u64>,
    groups: usize,
    per_unit: u64,
) -> (usize, String) {
    default_jobs_over(cores, 0, available_memory, groups, per_unit)
}

/// [`default_jobs_each`] with `extra` units beyond the cores.
pub fn default_jobs_over(
    cores: usize,
    extra: usize,
    available_memory: Option<u64>,
    groups: usize,
    per_unit: u64,
) -> (usize, String) {
    let by_memory = available_memory
        .map(|m| (m / per_unit.max(1)).max(1) as usize)
        .unwrap_or(1);
    let n = (cores + extra).min(by_memory).min(groups).max(1);
    let mem = available_memory
        .map(|m| format!("{:.1} GiB available", m as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "memory unknown".into());
    (
        n,
        format!(
            "{cores} core(s){}, {mem}, work for {groups} lab(s)",
            match extra {
                0 => String::new(),
                n => format!(" + {n}"),
            }
        ),
    )
}

/// What one kind cell costs at its peak: the node (kubelet, containerd, etcd, the control
/// plane), the Kanidm container, chromedriver and Chromium.
pub const MEMORY_PER_KIND_CELL: u64 = 3 << 30;

/// How a concurrency budget is spent over a matrix of `cells`: how many cells run at once,
/// and how many workers each of them has (the local backend's `--jobs` within a cell).
/// Cells first: they share nothing, so nothing is re-planned across them.
pub fn split_budget(budget: usize, cells: usize) -> (usize, usize) {
    let budget = budget.max(1);
    let at_once = budget.min(cells.max(1));
    (at_once, (budget / at_once).max(1))
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Which scenarios must stay together (the same key): those that can reuse one Kanidm
/// state. (A fixed redirect port is not a reason: logins on fixed ports take turns through
/// a machine-wide lock, `login::redirect_ports`, held only until the redirect is back.)
fn key(s: &LoadedScenario) -> String {
    super::kanidm_lab::fingerprint(s)
}

/// What a scenario costs, roughly, in seconds measured on 2 cores: ~3 to switch Kanidm and
/// the API server and log in, ~2 per step, and ~12 more for a step that stops Kanidm (a
/// restart of the API server against it, then recovery; `lifecycle-kanidm-down`, 18 s, is
/// the suite's longest). Key rotations are no longer slow: their steps present kept tokens
/// the API server has never seen, with no token-cache wait (`lifecycle-signing-keys` 39 →
/// 4–7 s).
fn weight(s: &LoadedScenario) -> usize {
    use crate::scenario::model::Change;
    let slow = |st: &crate::scenario::model::Step| {
        st.change
            .iter()
            .any(|c| matches!(c.value, Change::StopKanidm))
    };
    3 + s
        .scenario
        .steps
        .iter()
        .map(|st| if slow(st) { 12 } else { 2 })
        .sum::<usize>()
}

/// Scenario indexes by chain, chains in order of first appearance. A chain is scenarios
/// with the same [`key`] (they can reuse one Kanidm state), the clean ones first in the
/// original order, ended by a scenario that leaves Kanidm dirty
/// ([`crate::scenario::steps::leaves_kanidm_dirty`]). The scenario after a dirty one starts
/// a fresh Kanidm wherever it runs, so each further dirty one is a chain of its own and
/// may go to another worker at no cost.
fn grouped(scenarios: &[LoadedScenario]) -> Vec<Vec<usize>> {
    chains(scenarios, |s| {
        (key(s), crate::scenario::steps::leaves_kanidm_dirty(s))
    })
}

/// [`grouped`] over `(key, dirty)` as `of` gives them (pure).
fn chains<T>(items: &[T], of: impl Fn(&T) -> (String, bool)) -> Vec<Vec<usize>> {
    let mut groups: Vec<(String, Vec<usize>, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (k, dirty) = of(item);
        let g = match groups.iter().position(|(g, _, _)| *g == k) {
            Some(g) => g,
            None => {
                groups.push((k, Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        match dirty {
            false => groups[g].1.push(i),
            true => groups[g].2.push(i),
        }
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (_, clean, dirty) in groups {
        let mut dirty = dirty.into_iter();
        let mut first = clean;
        first.extend(dirty.next());
        out.push(first);
        out.extend(dirty.map(|d| vec![d]));
    }
    out.sort_by_key(|c| c[0]);
    out
}

fn group_cost(scenarios: &[LoadedScenario], group: &[usize]) -> usize {
    group.iter().map(|&i| weight(&scenarios[i])).sum()
}

/// The groups (scenarios that stay together, each in the original order), structured
/// configs before `--oidc-*` flags ([`crate::scenario::switch_class`] of a group's first
/// scenario: each kind cluster then switches to flags once, near the end) and heaviest
/// first within each: the order in which workers that share one queue take them.
pub fn groups_heaviest_first(scenarios: &[LoadedScenario]) -> Vec<Vec<usize>> {
    let mut out = grouped(scenarios);
    out.sort_by_key(|g| {
        (
            crate::scenario::switch_class(&scenarios[g[0]]),
            std::cmp::Reverse(group_cost(scenarios, g)),
        )
    });
    out
}

/// Scenario indexes per worker: chains ([`grouped`]) assigned heaviest first to the least
/// loaded worker; within each of several workers, chains heaviest first too (ties in order
/// of first appearance; one worker keeps the given order), so the longest one — Kanidm
/// stopped and started, mostly waits — starts at once and its waits overlap the other
/// workers' set-ups instead of ending the run. Chains are independent; within one, its dirty end never comes before
/// its clean scenarios.
pub fn partition(scenarios: &[LoadedScenario], jobs: usize) -> Vec<Vec<usize>> {
    let groups = grouped(scenarios);
    let jobs = jobs.max(1).min(groups.len().max(1));
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| std::cmp::Reverse(group_cost(scenarios, &groups[g])));
    let mut taken: Vec<Vec<usize>> = vec![Vec::new(); jobs];
    let mut load = vec![0usize; jobs];
    for g in order {
        let w = (0..jobs).min_by_key(|&w| (load[w], w)).unwrap_or(0);
        load[w] += group_cost(scenarios, &groups[g]);
        taken[w].push(g);
    }
    taken
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|mut t| {
            // One worker runs the scenarios as given (`--jobs 1` is the plain run).
            match jobs {
                1 => t.sort_unstable(),
                _ => t.sort_by_key(|&g| (std::cmp::Reverse(group_cost(scenarios, &groups[g])), g)),
            }
            t.into_iter().flat_map(|g| groups[g].clone()).collect()
        })
        .collect()
}

/// Work (in [`weight`]'s seconds) a worker must have to be worth its own lab: a lab's
/// set-up — etcd's bootstrap, the first kube-apiserver start, Kanidm, Chromium — costs
/// ~7 s of CPU, and on 2 cores both posts (~18) ran 14.4 s on one worker against 17.7 s
/// on two (paired runs).
pub const WORK_PER_WORKER: usize = 30;

/// The most workers `scenarios` keep busy enough to be worth their set-up.
pub fn worth(scenarios: &[LoadedScenario]) -> usize {
    (scenarios.iter().map(weight).sum::<usize>() / WORK_PER_WORKER).max(1)
}

/// How many groups `partition` would make (the most workers that can be busy).
pub fn groups(scenarios: &[LoadedScenario]) -> usize {
    grouped(scenarios).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> LoadedScenario {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        crate::scenario::load_file(&root.join(format!("scenarios/{name}.yaml"))).unwrap()
    }

    /// Every scenario index `0..n` is in exactly one worker's list.
    fn assert_each_once(workers: &[Vec<usize>], n: usize) {
        let mut seen: Vec<usize> = workers.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{workers:?}");
    }

    #[test]
    fn the_machine_decides_unless_told() {
        assert_eq!(default_jobs(2, Some(24 << 30), 10).0, 4, "two per core");
        assert_eq!(default_jobs(8, Some(5 << 30), 10).0, 2, "memory caps it");
        assert_eq!(
            default_jobs(2, Some(24 << 30), 3).0,
            3,
            "no more than the chains"
        );
        assert_eq!(
            default_jobs(8, Some(24 << 30), 1).0,
            1,
            "one group: one worker"
        );
        assert_eq!(default_jobs(2, None, 10).0, 1);
        assert!(default_jobs(2, Some(24 << 30), 3).1.contains("2 core(s)"));
        let kind = |mem: u64| default_jobs_each(8, Some(mem), 4, MEMORY_PER_KIND_CELL).0;
        assert_eq!((kind(24 << 30), kind(7 << 30), kind(1 << 30)), (4, 2, 1));
        let (n, why) = default_jobs_over(2, 1, Some(24 << 30), 5, MEMORY_PER_KIND_CELL);
        assert_eq!(n, 3);
        assert!(why.starts_with("2 core(s) + 1,"), "{why}");
        let (n, why) = default_jobs_over(2, 2, Some(24 << 30), 10, MEMORY_PER_KIND_CELL);
        assert_eq!(n, 4, "kind: two clusters per core");
        assert!(why.starts_with("2 core(s) + 2,"), "{why}");
    }

    #[test]
    fn a_dirty_scenario_ends_its_chain_and_the_next_dirty_one_stands_alone() {
        let items = [
            ("a", true),
            ("a", false),
            ("b", false),
            ("a", true),
            ("a", false),
            ("b", true),
        ];
        let c = chains(&items, |(k, d)| (k.to_string(), *d));
        assert_eq!(c, vec![vec![1, 4, 0], vec![2, 5], vec![3]]);
        // All clean: one chain per key, as before.
        let clean = [("a", false), ("a", false)];
        assert_eq!(
            chains(&clean, |(k, d)| (k.to_string(), *d)),
            vec![vec![0, 1]]
        );
    }

    #[test]
    fn lifecycle_scenarios_are_not_tied_to_one_worker() {
        let names = [
            "lifecycle-account-expired",
            "lifecycle-deny-one-token",
            "lifecycle-kanidm-down",
            "lifecycle-rename-person",
            "lifecycle-signing-keys",
        ];
        let all: Vec<LoadedScenario> = names.iter().map(|n| load(n)).collect();
        let w = partition(&all, 3);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_each_once(&w, names.len());
        let down = w.iter().find(|x| x.contains(&2)).unwrap();
        assert!(down.len() <= 2, "the 18 s one shares little: {w:?}");
    }

    #[test]
    fn a_worker_must_have_enough_work_to_be_worth_its_lab() {
        let posts: Vec<LoadedScenario> = [
            "post1-structured",
            "post2-as-written",
            "post2-fix-signing-algs",
            "post2-fix-legacy-crypto",
            "post2-passkey",
            "post2-user-binding",
        ]
        .iter()
        .map(|n| load(n))
        .collect();
        assert_eq!(worth(&posts), 1);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all: Vec<LoadedScenario> = crate::scenario::discover(&dir)
            .unwrap()
            .iter()
            .map(|p| crate::scenario::load_file(p).unwrap())
            .collect();
        assert!(worth(&all) >= 2, "the whole suite keeps two workers busy");
    }

    #[test]
    fn a_shared_queue_hands_out_whole_groups_heaviest_first() {
        let all: Vec<LoadedScenario> = [
            "post2-as-written",
            "lifecycle-kanidm-down",
            "post2-fix-signing-algs",
            "post1-structured",
        ]
        .iter()
        .map(|n| load(n))
        .collect();
        let g = groups_heaviest_first(&all);
        assert_eq!(g[0], vec![1], "stopping Kanidm is the heaviest: {g:?}");
        assert_eq!(g.last(), Some(&vec![0, 2]), "flags last: {g:?}");
        let mut seen: Vec<usize> = g.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert!(g.iter().all(|x| x.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn the_budget_goes_to_cells_first_then_to_workers() {
        assert_eq!(split_budget(2, 1), (1, 2));
        assert_eq!(split_budget(2, 2), (2, 1));
        assert_eq!(split_budget(2, 4), (2, 1));
        assert_eq!(split_budget(4, 2), (2, 2));
        assert_eq!(split_budget(5, 2), (2, 2));
        assert_eq!(split_budget(1, 4), (1, 1), "--jobs 1: one thing at a time");
        assert_eq!(split_budget(0, 0), (1, 1));
    }

    #[test]
    fn every_scenario_runs_once_and_the_workers_are_balanced() {
        let names = [
            "post1-structured",
            "post2-as-written",
            "post2-fix-signing-algs",
            "kubelogin-post1",
            "wrong-audience",
            "lifecycle-signing-keys",
        ];
        let all: Vec<LoadedScenario> = names.iter().map(|n| load(n)).collect();
        let w = partition(&all, 2);
        assert_eq!(w.len(), 2);
        assert_each_once(&w, names.len());
        let together = |a: usize, b: usize| w.iter().any(|x| x.contains(&a) && x.contains(&b));
        assert!(
            together(1, 2),
            "post 2's port 8000 scenarios share a worker: {w:?}"
        );
        assert!(together(1, 3), "kubelogin listens on 8000 too: {w:?}");
        assert_eq!(
            partition(&all, 1),
            vec![(0..names.len()).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn on_several_workers_the_heaviest_chain_starts_first() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut all: Vec<LoadedScenario> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| crate::scenario::load_file(&p).unwrap())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let down = all
            .iter()
            .position(|s| s.name == "lifecycle-kanidm-down")
            .unwrap();
        for jobs in [2, 3, 4] {
            let w = partition(&all, jobs);
            assert_each_once(&w, all.len());
            // Every worker's list is whole chains, heaviest first: the heaviest chain of
            // all (the one that stops Kanidm is among the heavy ones) starts its worker's.
            let chains = grouped(&all);
            let chain_of = |i: usize| chains.iter().position(|c| c.contains(&i)).unwrap();
            let heaviest = (0..chains.len())
                .max_by_key(|&c| (group_cost(&all, &chains[c]), std::cmp::Reverse(c)))
                .unwrap();
            assert!(group_cost(&all, &chains[chain_of(down)]) >= 12 + 3);
            let mine = w.iter().find(|x| x.contains(&chains[heaviest][0])).unwrap();
            assert_eq!(chain_of(mine[0]), heaviest, "jobs {jobs}: {w:?}");
            for list in &w {
                let mut order: Vec<usize> = list.iter().map(|&i| chain_of(i)).collect();
                order.dedup();
                let costs: Vec<usize> = order
                    .iter()
                    .map(|&c| group_cost(&all, &chains[c]))
                    .collect();
                assert!(
                    costs.windows(2).all(|p| p[0] >= p[1]),
                    "jobs {jobs}: {costs:?}"
                );
                let flat: Vec<usize> = order.iter().flat_map(|&c| chains[c].clone()).collect();
                assert_eq!(
                    &flat, list,
                    "jobs {jobs}: chains stay whole and in their order"
                );
            }
        }
        // One worker: chain after chain as they first appear, as without workers.
        assert_eq!(partition(&all, 1), vec![grouped(&all).concat()]);
    }
}
