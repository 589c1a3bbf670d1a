# agora: make, make check, make demo, make install, make clean
-include config.mk

LIBSRC = anchor artifact audit buf bundle clock conf control crash err exec fsio hash id init lock map \
	idle merkle note plan reconcile replicate sandbox sched spawn state store submit cli clijson
PROGS = agora agora-init agora-validate agora-submit agora-reconcile agora-serve \
	agora-watch agora-status agora-ctl agora-show agora-apply agora-audit agora-verify \
	agora-replicate
LIBEXEC = agora-exec agora-tick
MAN1 = $(PROGS:%=doc/%.1)
MAN5 = doc/agora-plan.5 doc/agora-state.5 doc/agora-bundle.5
MAN7 = doc/agora.7

LIBOBJ = $(LIBSRC:%=build/%.o)
BINS = $(PROGS:%=bin/%) $(LIBEXEC:%=bin/%)

all: $(BINS)

config.mk:
	./configure

build/%.o: src/%.c src/agora.h src/audit.h src/bundle.h src/internal.h src/banned.h config.mk
	@mkdir -p build
	@echo "CC $<"; $(CC) $(CFLAGS) -DLIBEXECDIR='"$(LIBEXECDIR)"' -c -o $@ $<

build/libagora.a: $(LIBOBJ)
	rm -f $@
	ar rcs $@ $(LIBOBJ)

bin/%: build/%.o build/libagora.a
	@mkdir -p bin
	@echo "LD $@"; $(CC) $(LDFLAGS) -o $@ $< build/libagora.a $(LIBS)

# agora-reconcile answers an idle tick on libc alone (see its source):
# --as-needed keeps the libraries it never calls out of its load.
bin/agora-reconcile: build/agora-reconcile.o build/libagora.a
	@mkdir -p bin
	@echo "LD $@"; $(CC) $(LDFLAGS) -o $@ $< build/libagora.a -Wl,--as-needed $(LIBS)

bin/agora-helper: t/helper/agora-helper.c build/libagora.a src/agora.h src/audit.h src/bundle.h
	@mkdir -p bin
	$(CC) $(CFLAGS) -Isrc $(LDFLAGS) -o $@ $< build/libagora.a $(LIBS)

check: all bin/agora-helper
	@sh t/run

demo: all
	@sh examples/fanout/run.sh
	@echo
	@sh examples/offload-fanout/run.sh

bench: all
	@sh bench/run

install: all
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	cp $(PROGS:%=bin/%) $(DESTDIR)$(BINDIR)/
	cp $(LIBEXEC:%=bin/%) $(DESTDIR)$(LIBEXECDIR)/
	cp $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	cp $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	cp $(MAN7) $(DESTDIR)$(MANDIR)/man7/

clean:
	rm -rf build bin

distclean: clean
	rm -f config.mk

.PHONY: all check demo bench install clean distclean
.SECONDARY:
