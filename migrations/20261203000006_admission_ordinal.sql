-- Where each admission stands among all of its onsale's admissions (1, 2, …), as the line
-- counted them when it made them. Two controllers can overlap for a moment (one whose lease
-- lapsed while it was slow, and its heir), and the later batch may then be written first: the
-- order of `admission_id` is the order the rows were written, `ordinal` the order the
-- admissions were made. Admission order is checked against queue order by `ordinal`.
alter table admission add column ordinal bigint;
create index admission_ordinal_idx on admission (onsale_id, ordinal);
