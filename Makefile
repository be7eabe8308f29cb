# make              build bpfgate (with cgo), its man pages and completions into dist/build
# make install      install them under $(DESTDIR)$(PREFIX) (default /usr/local)
# make uninstall    remove what make install installed
# make deb          build dist/bpfgate_VERSION-1_ARCH.deb and dist/bpfgate-k8s_VERSION-1_ARCH.deb (packaging/build-deb.sh)
# make test         the whole test suite (scripts/test.sh), then the packaging tests
# make clean        remove dist/

PREFIX ?= /usr/local
DESTDIR ?=
GO ?= go
export GO

BUILD := dist/build
BINDIR := $(PREFIX)/bin
MANDIR := $(PREFIX)/share/man/man1
BASHDIR := $(PREFIX)/share/bash-completion/completions
ZSHDIR := $(PREFIX)/share/zsh/site-functions
FISHDIR := $(PREFIX)/share/fish/vendor_completions.d
UNITDIR := $(PREFIX)/lib/systemd/system
DOCDIR := $(PREFIX)/share/doc/bpfgate

.PHONY: all install uninstall deb test clean

# go build decides what to rebuild; stage.sh always runs it.
all:
	packaging/stage.sh $(BUILD) $(BINDIR)

install: all
	install -D -m 0755 $(BUILD)/bpfgate $(DESTDIR)$(BINDIR)/bpfgate
	install -d $(DESTDIR)$(MANDIR)
	install -m 0644 $(BUILD)/man/*.1 $(DESTDIR)$(MANDIR)/
	install -D -m 0644 $(BUILD)/completions/bpfgate.bash $(DESTDIR)$(BASHDIR)/bpfgate
	install -D -m 0644 $(BUILD)/completions/_bpfgate $(DESTDIR)$(ZSHDIR)/_bpfgate
	install -D -m 0644 $(BUILD)/completions/bpfgate.fish $(DESTDIR)$(FISHDIR)/bpfgate.fish
	install -D -m 0644 $(BUILD)/bpfgate-preload.service $(DESTDIR)$(UNITDIR)/bpfgate-preload.service
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/bpfgate $(DESTDIR)$(MANDIR)/bpfgate.1 $(DESTDIR)$(MANDIR)/bpfgate-*.1 \
		$(DESTDIR)$(BASHDIR)/bpfgate $(DESTDIR)$(ZSHDIR)/_bpfgate $(DESTDIR)$(FISHDIR)/bpfgate.fish \
		$(DESTDIR)$(UNITDIR)/bpfgate-preload.service
	rm -rf $(DESTDIR)$(DOCDIR)

deb:
	packaging/build-deb.sh dist

test:
	./scripts/test.sh
	cd packaging && $(GO) vet ./... && $(GO) test -count=1 ./...

clean:
	rm -rf dist
