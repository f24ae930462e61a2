-- A window is small next to the tables it is joined with: on SSD storage an index lookup per
-- window row beats scanning the fact and staging tables, which keeps a build's cost proportional
-- to the window instead of to the table sizes.
SET LOCAL random_page_cost = 1.1
