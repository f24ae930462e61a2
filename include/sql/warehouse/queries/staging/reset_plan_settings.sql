RESET enable_hashjoin;
RESET enable_mergejoin
