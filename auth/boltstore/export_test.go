package boltstore

// PageWrites is the number of page writes of the store's committed transactions.
func (b *Store) PageWrites() int64 {
	st := b.db.Stats()
	return st.TxStats.GetWrite()
}
