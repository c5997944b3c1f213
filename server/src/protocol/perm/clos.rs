//! HePerm for a layer spread over several ciphertexts: a uniformly random permutation of all its
//! positions, applied as three cheap stages (a Clos network).
//!
//! Folding a permutation into a layer's matrix is free when the matrix is dense, but a
//! convolution's output is sparse in diagonal form and a random permutation of its rows makes
//! every diagonal non-zero (8192 per block at N = 2^14). Instead the positions are seen as a grid
//! of rows of `width` slots (each row inside one ciphertext) and the permutation π is split into
//!
//! 1. a permutation within every row, (r, c) → (r, m);
//! 2. a permutation within every column, (r, m) → (r', m);
//! 3. a permutation within every row, (r', m) → π's position (r', c').
//!
//! Such a split exists for every π (the rows-to-rows multigraph of π is `width`-regular and
//! bipartite, so its edges split into `width` perfect matchings, the "middle columns" m). As
//! diagonals, stages 1 and 3 only use the 2·width − 1 shifts below the row width, and stage 2 the
//! S/width multiples of it, so the three stages cost a few hundred plaintext products instead of
//! tens of thousands, and three levels.

use crate::eval::{BlockTransform, Bsgs};
use crate::protocol::ProtocolError;

/// Levels the three stages consume (one plaintext product each).
pub(in crate::protocol) const STAGE_LEVELS: usize = 3;

/// Row width of the grid for `slots` slots: stages 1 and 3 have about 2·width diagonals per
/// ciphertext, stage 2 S/width per pair of ciphertexts; this balances them.
pub(in crate::protocol) fn grid_width(slots: usize) -> usize {
    ((slots as f64).sqrt() as usize)
        .next_power_of_two()
        .min(slots)
        / 2
}

/// The three stage permutations of `pi` (position → position) over a grid of rows of `width`.
pub(super) fn decompose(pi: &[usize], width: usize) -> Result<[Vec<usize>; 3], ProtocolError> {
    let n = pi.len();
    if width == 0 || !width.is_power_of_two() || !n.is_multiple_of(width) {
        return Err(ProtocolError::Model(format!(
            "{n} positions do not make rows of {width}"
        )));
    }
    let rows = n / width;
    let mut seen = vec![false; n];
    for &p in pi {
        if p >= n || std::mem::replace(&mut seen[p], true) {
            return Err(ProtocolError::Model("not a permutation".into()));
        }
    }
    // Edge g joins source row g / width to destination row π(g) / width.
    let ends: Vec<(usize, usize)> = (0..n).map(|g| (g / width, pi[g] / width)).collect();
    let mut colour = vec![0usize; n];
    split(&ends, rows, (0..n).collect(), width, 0, &mut colour);
    let mut s1 = vec![0; n];
    let mut s2 = vec![0; n];
    let mut s3 = vec![0; n];
    for g in 0..n {
        let (r, r2) = ends[g];
        let m = colour[g];
        s1[g] = r * width + m;
        s2[r * width + m] = r2 * width + m;
        s3[r2 * width + m] = pi[g];
    }
    Ok([s1, s2, s3])
}

/// Colours `edges` (a `degree`-regular bipartite multigraph, degree a power of two) with
/// `degree` colours from `base` on: each Euler split halves the degree.
fn split(
    ends: &[(usize, usize)],
    rows: usize,
    edges: Vec<usize>,
    degree: usize,
    base: usize,
    colour: &mut [usize],
) {
    if degree == 1 {
        for e in edges {
            colour[e] = base;
        }
        return;
    }
    // Adjacency of left vertices 0..rows and right vertices rows..2·rows.
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); 2 * rows];
    for &e in &edges {
        let (u, v) = ends[e];
        adj[u].push(e);
        adj[rows + v].push(e);
    }
    let mut used = vec![false; ends.len()];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for start in 0..rows {
        // Closed trails from `start`: every vertex has even degree, and consecutive edges go to
        // alternate halves, so each vertex keeps half of its edges in each.
        loop {
            let mut at = start;
            let mut step = 0usize;
            let mut moved = false;
            while let Some(e) = next_unused(&mut adj[at], &used) {
                used[e] = true;
                moved = true;
                if step.is_multiple_of(2) {
                    a.push(e);
                } else {
                    b.push(e);
                }
                step += 1;
                let (u, v) = ends[e];
                at = if at < rows { rows + v } else { u };
            }
            if !moved {
                break;
            }
        }
    }
    split(ends, rows, a, degree / 2, base, colour);
    split(ends, rows, b, degree / 2, base + degree / 2, colour);
}

fn next_unused(list: &mut Vec<usize>, used: &[bool]) -> Option<usize> {
    while let Some(e) = list.pop() {
        if !used[e] {
            return Some(e);
        }
    }
    None
}

/// Baby-step splits of the stages: shifts below the width (both ways), and multiples of it.
fn stage_bsgs(stage: usize, slots: usize, width: usize) -> Bsgs {
    if stage == 1 {
        Bsgs::balanced(width, slots / width)
    } else {
        Bsgs::balanced(1, 2 * width)
    }
}

/// Stage `stage` (0, 1, 2) as a transform over `cts` ciphertexts: out[σ(g)] = gain(σ(g))·in[g].
pub(super) fn stage_transform(
    stage: usize,
    sigma: &[usize],
    gain: impl Fn(usize) -> f64,
    slots: usize,
    width: usize,
) -> Result<BlockTransform, ProtocolError> {
    let cts = sigma.len() / slots;
    let entries = sigma.iter().enumerate().map(|(g, &d)| (d, g, gain(d)));
    stage_from_entries(stage, entries, cts, slots, width)
}

/// A stage's transform over `cts` full ciphertexts from its entries (row, column, value).
fn stage_from_entries(
    stage: usize,
    entries: impl IntoIterator<Item = (usize, usize, f64)>,
    cts: usize,
    slots: usize,
    width: usize,
) -> Result<BlockTransform, ProtocolError> {
    let bsgs = stage_bsgs(stage, slots, width);
    Ok(BlockTransform::from_entries(
        slots, cts, slots, cts, entries, bsgs,
    )?)
}

/// Every rotation step any permutation's stages can need over `cts` ciphertexts.
pub(in crate::protocol) fn rotation_steps(
    cts: usize,
    slots: usize,
    width: usize,
) -> Result<Vec<i64>, ProtocolError> {
    let mut steps = Vec::new();
    // One entry per possible diagonal: shifts within a row, and whole rows within a column.
    let within_row: Vec<(usize, usize, f64)> = (0..cts)
        .flat_map(|o| {
            let base = o * slots + width;
            (0..2 * width - 1).map(move |k| (base + width - 1, base + k, 1.0))
        })
        .collect();
    let within_column: Vec<(usize, usize, f64)> = (0..cts)
        .flat_map(|o| (0..cts).map(move |j| (o, j)))
        .flat_map(|(o, j)| (0..slots / width).map(move |m| (o * slots, j * slots + m * width, 1.0)))
        .collect();
    for (stage, entries) in [(0, within_row), (1, within_column)] {
        let t = stage_from_entries(stage, entries, cts, slots, width)?;
        steps.extend(t.rotation_steps());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::rand_core::{Rng, SeedableRng};
    use client_core::sampling::Csprng;

    fn shuffled(n: usize, seed: u8) -> Vec<usize> {
        let mut rng = Csprng::from_seed([seed; 32]);
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        p
    }

    #[test]
    fn stages_compose_to_the_permutation_and_stay_in_their_rows_and_columns() {
        for (n, width, seed) in [(64, 8, 1), (2 * 8192, 64, 2), (3 * 256, 16, 3)] {
            let pi = shuffled(n, seed);
            let [s1, s2, s3] = decompose(&pi, width).unwrap();
            for g in 0..n {
                assert_eq!(s3[s2[s1[g]]], pi[g]);
                assert_eq!(s1[g] / width, g / width, "stage 1 leaves its row");
                assert_eq!(
                    s2[s1[g]] % width,
                    s1[g] % width,
                    "stage 2 leaves its column"
                );
                assert_eq!(
                    s3[s2[s1[g]]] / width,
                    s2[s1[g]] / width,
                    "stage 3 leaves its row"
                );
            }
            for s in [&s1, &s2, &s3] {
                let mut sorted = s.clone();
                sorted.sort_unstable();
                assert!(sorted.iter().enumerate().all(|(i, &v)| i == v));
            }
        }
    }

    #[test]
    fn bad_grids_are_errors() {
        assert!(decompose(&[1, 0, 2], 2).is_err());
        assert!(decompose(&[0, 0, 1, 2], 2).is_err());
        assert!(decompose(&[0, 1, 2, 3], 3).is_err());
    }
}
