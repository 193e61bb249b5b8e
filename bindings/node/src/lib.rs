//! Native module of the `sluice-client` npm package (work in progress: issue 5).
