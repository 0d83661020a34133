package pgstore

import "context"

// Ping reports whether the database can be reached now (the server's
// /healthz answers 503 while it cannot).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check("ping"); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.wrap(err, "ping the database")
	}
	return nil
}
