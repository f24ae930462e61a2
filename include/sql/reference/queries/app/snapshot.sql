-- One consistent snapshot for the whole read: merchants must not reference a currency read later.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
