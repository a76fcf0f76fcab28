package boltstore

import bolt "go.etcd.io/bbolt"

// PageWrites is the number of page writes of the store's committed transactions.
func (b *Store) PageWrites() int64 {
	st := b.db.Stats()
	return st.TxStats.GetWrite()
}

// UsedBytes is the size of the database's pages in use: the file's high
// water mark less its free pages.
func (b *Store) UsedBytes() (int64, error) {
	var size int64
	err := b.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	st := b.db.Stats()
	return size - int64(st.FreePageN+st.PendingPageN)*int64(b.db.Info().PageSize), err
}
