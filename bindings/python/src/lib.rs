//! Native module of the `sluice` Python package (work in progress: issue 4).
