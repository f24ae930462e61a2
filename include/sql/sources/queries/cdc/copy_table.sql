COPY (SELECT {columns} FROM {table}) TO STDOUT
