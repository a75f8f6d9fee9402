-- Prints exact latency percentiles (in microseconds) after a wrk run, one
-- per line, for scripts/bench/run.sh to read.
done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g %d\n", p, latency:percentile(p)))
  end
end
