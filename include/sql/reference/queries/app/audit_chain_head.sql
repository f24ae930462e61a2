SELECT chain_position, row_hash FROM audit_chain_head;
