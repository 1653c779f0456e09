// Command ferretdb-local runs an embedded FerretDB (v1.24.x) with the SQLite
// backend for local development. It is built and started by infra/infra.sh.
//
// Flags (each falls back to an environment variable, then to a default):
//
//	-listen      FERRETDB_LISTEN_ADDR   127.0.0.1:27017
//	-sqlite-dir  FERRETDB_SQLITE_DIR    ./ferretdb-data
//	-log-level   FERRETDB_LOG_LEVEL     info (debug, info, warn, error)
//
// The SQLite directory is created if it does not exist. SIGINT/SIGTERM stop
// the server gracefully.
//
// With -check, it does not start a server: it connects to the -listen address
// as a MongoDB client, writes, reads back and deletes a document (in the
// database "_advocacy_infra_check", dropped afterwards) and exits 0 on success.
// infra/infra.sh uses that as its readiness probe.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// check performs a real write/read/delete round trip against addr.
func check(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	uri := "mongodb://" + addr + "/?directConnection=true"
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(timeout).SetConnectTimeout(timeout))
	if err != nil {
		return fmt.Errorf("connect %s: %w", uri, err)
	}
	defer client.Disconnect(context.Background()) //nolint:errcheck // best effort

	db := client.Database("_advocacy_infra_check")
	coll := db.Collection("ready")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())

	if _, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "at", Value: time.Now().UTC()}}); err != nil {
		return fmt.Errorf("insert: %w", err)
	}

	var got bson.M
	if err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		return fmt.Errorf("find: %w", err)
	}

	if _, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete: %w", err)
	}

	if err = db.Drop(ctx); err != nil {
		return fmt.Errorf("drop: %w", err)
	}

	return nil
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP listen address (env FERRETDB_LISTEN_ADDR)")
	dir := flag.String("sqlite-dir", envOr("FERRETDB_SQLITE_DIR", "ferretdb-data"), "SQLite data directory (env FERRETDB_SQLITE_DIR)")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FERRETDB_LOG_LEVEL)")
	doCheck := flag.Bool("check", false, "do not serve: probe a running server at -listen with a write/read/delete and exit")
	checkTimeout := flag.Duration("check-timeout", 5*time.Second, "timeout for -check")
	flag.Parse()

	if *doCheck {
		if err := check(*listen, *checkTimeout); err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb check %s: %v\n", *listen, err)
			os.Exit(1)
		}
		fmt.Printf("ferretdb check %s: ok\n", *listen)
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "invalid -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		logger.Error("cannot resolve SQLite directory", "dir", *dir, "error", err)
		os.Exit(1)
	}
	if err = os.MkdirAll(absDir, 0o755); err != nil {
		logger.Error("cannot create SQLite directory", "dir", absDir, "error", err)
		os.Exit(1)
	}

	// FerretDB wants a "file:" URI whose path is an existing directory ending with "/".
	sqliteURL := (&url.URL{Scheme: "file", Path: strings.TrimSuffix(absDir, "/") + "/"}).String()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "listen", *listen, "sqlite", sqliteURL, "error", err)
		os.Exit(1)
	}

	logger.Info("FerretDB listening", "addr", *listen, "sqlite", sqliteURL, "pid", os.Getpid())

	if err = f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with error", "error", err)
		os.Exit(1)
	}

	logger.Info("FerretDB stopped")
}
