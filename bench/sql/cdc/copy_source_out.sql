COPY bench_copy_source TO STDOUT
