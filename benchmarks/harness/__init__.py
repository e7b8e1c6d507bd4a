"""What the benchmark scripts share: an HTTP client and open-loop load generator, the serving
request mix, the filtered-retrieval sweep, and published reference numbers."""
